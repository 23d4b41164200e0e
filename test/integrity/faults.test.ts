/**
 * Fault safety: a database error in the middle of persisting an event; a read-only and a full SQLite database;
 * PostgreSQL going away and coming back while clients send and sync.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { armFault } from '../../src/integrity/faults.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';
import { ownCluster, pgAvailable } from './pg-util.js';
import { allMessages, bodies, createRoom, doctor, enc, sendText } from './util.js';

process.env.HEARTH_FAULT_INJECTION = '1';
type User = Client & { userId: string; deviceId: string };

for (const engine of ENGINES) {
  describe(`${engine}: a database error while persisting an event`, () => {
    let server: TestServer;
    let alice: User;
    let room: string;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('f_alice');
      room = await createRoom(alice);
    });
    after(() => server.close());

    it('rolls back, answers 500 M_UNKNOWN, and the retry succeeds exactly once', async () => {
      const before = await sendText(alice, room, 'before');
      armFault('persist-event');
      const path = `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/faulty`;
      const failed = await alice.put(path, { msgtype: 'm.text', body: 'faulty' });
      assert.equal(failed.status, 500);
      assert.equal(failed.body.errcode, 'M_UNKNOWN');
      const db = server.hs.storage.db;
      const rows = await db.selectFrom('events').select('json').where('json', 'like', '%"faulty"%').execute();
      assert.equal(rows.length, 0, 'nothing of the failed write is in the database');
      assert.deepEqual(bodies(await allMessages(alice, room)).slice(-1), ['before']);

      const first = await alice.put(path, { msgtype: 'm.text', body: 'faulty' });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const second = await alice.put(path, { msgtype: 'm.text', body: 'faulty' });
      assert.equal(second.body.event_id, first.body.event_id);
      assert.deepEqual(bodies(await allMessages(alice, room)).slice(-2), ['before', 'faulty']);
      // The writer's head held nothing of the failed event: the retry follows the last committed event.
      const row = await db
        .selectFrom('events')
        .select('json')
        .where('event_id', '=', first.body.event_id as string)
        .executeTakeFirstOrThrow();
      assert.deepEqual((JSON.parse(row.json) as { prev_events: string[] }).prev_events, [before]);
      await server.stop();
      assert.deepEqual((await doctor(server)).problems, []);
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
    });
  });
}

describe('sqlite: a read-only or full database', () => {
  let server: TestServer;
  let alice: User;
  let room: string;
  before(async () => {
    server = await startTestServer('sqlite');
    alice = await server.user('ro_alice');
    room = await createRoom(alice);
    await sendText(alice, room, 'one');
  });
  after(() => server.close());

  // Root ignores file modes, so the refusal is made by SQLite itself on the server's own connection:
  // query_only makes every write fail with SQLITE_READONLY, max_page_count makes growth fail with SQLITE_FULL.
  for (const [what, on, off] of [
    ['read-only', sql`PRAGMA query_only = ON`, sql`PRAGMA query_only = OFF`],
    ['full', sql`PRAGMA max_page_count = 1`, sql`PRAGMA max_page_count = 1073741823`],
  ] as const) {
    it(`${what}: writes fail with a clear 503, reads keep working, the file stays sound`, async () => {
      const db = server.hs.storage.db;
      const path = `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/${what}`;
      const big = { msgtype: 'm.text', body: `${what} ${'x'.repeat(8000)}` };
      if (what === 'full') {
        const pages = await sql<{ page_count: number }>`PRAGMA page_count`.execute(db);
        await sql.raw(`PRAGMA max_page_count = ${Number(pages.rows[0]?.page_count)}`).execute(db);
        // Fill the last free pages so that the next write must grow the file.
        for (let i = 0; i < 200; i++) {
          const r = await alice.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/fill${i}`, {
            msgtype: 'm.text',
            body: 'x'.repeat(2000),
          });
          if (r.status !== 200) break;
        }
      } else await on.execute(db);
      try {
        const res = await alice.put(path, big);
        assert.equal(res.status, 503, JSON.stringify(res.body));
        assert.equal(res.body.errcode, 'M_UNKNOWN');
        assert.match(res.body.error as string, what === 'full' ? /full/ : /read-only/);
        const state = await alice.get(`/_matrix/client/v3/rooms/${enc(room)}/state`);
        assert.equal(state.status, 200);
        assert.ok(bodies(await allMessages(alice, room)).includes('one'));
      } finally {
        await off.execute(db);
      }
      const integrity = await sql<{ integrity_check: string }>`PRAGMA integrity_check`.execute(db);
      assert.equal(integrity.rows[0]?.integrity_check, 'ok');
      const retry = await alice.put(path, big);
      assert.equal(retry.status, 200, JSON.stringify(retry.body));
    });
  }
});

describe('postgres: the database goes away and comes back', { skip: !pgAvailable() }, () => {
  it('fails fast with 503 while down, recovers without restart, loses nothing acknowledged', async () => {
    const cluster = await ownCluster();
    const dataDir = mkdtempSync(join(tmpdir(), 'hearth-pgloss-'));
    const db = {
      config: { engine: 'postgres' as const, url: cluster.url, max_connections: 5 },
      drop: async () => {},
    };
    const server = await startTestServer('postgres', {}, { db, dataDir });
    try {
      const alice = await server.user('pg_alice');
      const room = await createRoom(alice);
      const acked: string[] = [];
      let i = 0;
      let stop = false;
      const statuses = new Map<number, number>();
      let slowest = 0;
      const drive = async (): Promise<void> => {
        while (!stop) {
          const txn = `p${i++}`;
          const t = Date.now();
          const res = await alice.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/${txn}`, {
            msgtype: 'm.text',
            body: txn,
          });
          await alice.get('/_matrix/client/v3/sync?timeout=0');
          slowest = Math.max(slowest, Date.now() - t);
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status === 200) acked.push(res.body.event_id as string);
          else {
            assert.equal(res.status, 503, JSON.stringify(res.body));
            assert.equal(res.body.errcode, 'M_UNKNOWN');
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      };
      const drivers = [drive(), drive()];
      await new Promise((r) => setTimeout(r, 300));
      cluster.stop();
      const down = Date.now();
      await new Promise((r) => setTimeout(r, 1500));
      const whileDown = await alice.get('/_matrix/client/v3/sync?timeout=0');
      assert.equal(whileDown.status, 503, JSON.stringify(whileDown.body));
      assert.ok(Date.now() - down < 10_000);
      cluster.start();
      await new Promise((r) => setTimeout(r, 1000));
      stop = true;
      await Promise.all(drivers);
      assert.ok((statuses.get(503) ?? 0) > 0, 'requests failed while the database was down');
      assert.ok(slowest < 8000, `a request took ${slowest} ms`);
      const after = await sendText(alice, room, 'after');
      acked.push(after);
      const ids = new Set((await allMessages(alice, room)).map((e) => e.event_id));
      for (const id of acked) assert.ok(ids.has(id), `${id} was acknowledged but is missing`);
    } finally {
      await server.stop();
      cluster.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
