/**
 * Group commit under SIGKILL: several users send bursts of concurrent messages into a shared room and their own
 * rooms (so groups span rooms) while the server (a child process) is killed at random moments. After every kill the
 * doctor finds the database clean; after every restart every acknowledged send is in /messages with the event id
 * its 2xx named, and the sends that were in flight, retried with their txnId, are stored exactly once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createAccount } from '../../src/accounts/register.js';
import { runDoctor } from '../../src/integrity/doctor.js';
import { openStorage } from '../../src/storage/db.js';
import { ENGINES, freshDatabase, type TestDatabase } from '../helpers/engines.js';
import { Client, type TestServer } from '../helpers/server.js';
import { allMessages, enc, writeConfig } from './util.js';
import { kill, startChild } from './child-harness.js';

const CYCLES: Record<string, number> = { sqlite: 3, postgres: 3 };
const USERS = 6;

interface Send {
  client: Client;
  roomId: string;
  txn: string;
}

for (const engine of ENGINES) {
  describe(`${engine}: SIGKILL during bursts of grouped sends`, () => {
    let db: TestDatabase;
    const dataDir = mkdtempSync(join(tmpdir(), 'hearth-gc-kill-'));
    after(async () => {
      await db?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it(`${CYCLES[engine]} kill cycles lose nothing acknowledged and duplicate nothing`, async () => {
      db = await freshDatabase(engine);
      const config = writeConfig({ db, dataDir, serverName: 'test.local' } as TestServer, {
        rate_limiting: { enabled: false },
      });
      const setup = await openStorage(db.config);
      for (let i = 0; i < USERS; i++) {
        await createAccount(setup.db, {
          localpart: `gk${i}`,
          serverName: 'test.local',
          password: 'pw-pw-pw-pw',
          admin: false,
        });
      }
      await setup.close();
      let { child, url } = await startChild(config);
      const clients: Client[] = [];
      for (let i = 0; i < USERS; i++) {
        const c = new Client(url);
        const res = await c.post('/_matrix/client/v3/login', {
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user: `gk${i}` },
          password: 'pw-pw-pw-pw',
        });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        c.token = res.body.access_token as string;
        clients.push(c);
      }
      const createRoom = async (c: Client): Promise<string> => {
        const res = await c.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return res.body.room_id as string;
      };
      const shared = await createRoom(clients[0] as Client);
      for (const c of clients.slice(1)) {
        const res = await c.post(`/_matrix/client/v3/rooms/${enc(shared)}/join`, {});
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      const own = await Promise.all(clients.map((c) => createRoom(c)));

      const acked = new Map<string, string>(); // txn -> event id
      const inFlight = new Map<string, Send>();
      let alive = true;
      let n = 0;
      const put = (s: Send): Promise<{ status: number; body: Record<string, unknown> }> =>
        s.client.put(`/_matrix/client/v3/rooms/${enc(s.roomId)}/send/m.room.message/${s.txn}`, {
          msgtype: 'm.text',
          body: s.txn,
        });
      const worker = async (client: Client, roomId: string): Promise<void> => {
        while (alive) {
          const s: Send = { client, roomId, txn: `m${n++}` };
          inFlight.set(s.txn, s);
          try {
            const res = await put(s);
            if (res.status !== 200) return; // the server is going away
            acked.set(s.txn, res.body.event_id as string);
            inFlight.delete(s.txn);
          } catch {
            return; // the server is gone
          }
        }
      };

      for (let cycle = 0; cycle < (CYCLES[engine] as number); cycle++) {
        alive = true;
        const workers = clients.flatMap((c, i) => [worker(c, shared), worker(c, own[i] as string)]);
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
        await kill(child);
        alive = false;
        await Promise.all(workers);

        const storage = await openStorage(db.config);
        try {
          const report = await runDoctor(storage);
          assert.deepEqual(report.problems, [], `cycle ${cycle}: ${JSON.stringify(report.problems)}`);
        } finally {
          await storage.close();
        }
        ({ child, url } = await startChild(config));
        for (const c of clients) c.baseUrl = url;
        // A client retries what got no answer: stored once, whether or not it had committed.
        for (const s of [...inFlight.values()]) {
          const res = await put(s);
          assert.equal(res.status, 200, JSON.stringify(res.body));
          acked.set(s.txn, res.body.event_id as string);
          inFlight.delete(s.txn);
        }
      }
      assert.ok(acked.size > USERS * 2, `only ${acked.size} sends were acknowledged`);

      const stored = new Map<string, string[]>(); // body (txn) -> event ids
      const readers: [Client, string][] = [
        [clients[0] as Client, shared],
        ...clients.map((c, i): [Client, string] => [c, own[i] as string]),
      ];
      for (const [reader, roomId] of readers) {
        for (const e of await allMessages(reader, roomId)) {
          if (e.type !== 'm.room.message') continue;
          const body = (e.content as { body: string }).body;
          stored.set(body, [...(stored.get(body) ?? []), e.event_id as string]);
        }
      }
      for (const [txn, eventId] of acked) {
        assert.deepEqual(stored.get(txn), [eventId], `${txn} is stored once, as acknowledged`);
      }
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    });
  });
}
