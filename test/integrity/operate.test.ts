/**
 * Operating Hearth: the doctor through the CLI (report, --json, exit statuses, --list-quarantine) and online through
 * the admin API while the server serves; backup while serving, restore into an empty database, doctor clean.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../src/cli/main.js';
import { ENGINES, freshDatabase } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';
import {
  allMessages,
  bodies,
  createRoom,
  damage,
  doctor,
  sendText,
  syncBodies,
  writeConfig,
} from './util.js';

type User = Client & { userId: string; deviceId: string };

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  process.exitCode = 0;
  try {
    await main(['node', 'hearth', ...args]);
  } finally {
    console.log = log;
    console.error = error;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return { code, out: out.join('\n'), err: err.join('\n') };
}

for (const engine of ENGINES) {
  describe(`${engine}: operating Hearth`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let room: string;
    const ids: Record<string, string> = {};

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('op_admin', { admin: true });
      bob = await server.user('op_bob');
      room = await createRoom(alice);
      await bob.post(`/_matrix/client/v3/rooms/${encodeURIComponent(room)}/join`, {});
      for (const m of ['a', 'b', 'c', 'd']) ids[m] = await sendText(alice, room, m);
    });
    after(() => server.close());

    it('the CLI reports problems (text and JSON), repairs, lists the quarantine; exit 0/1/2', async () => {
      await server.stop();
      const config = writeConfig(server);
      assert.equal((await cli(['doctor', '--config', config])).code, 0);
      await damage(server, async (db) => {
        await db
          .updateTable('events')
          .set({ json: '{' })
          .where('event_id', '=', ids.b as string)
          .execute();
        await db
          .insertInto('to_device_messages')
          .values({
            user_id: bob.userId,
            device_id: 'GONE',
            stream_pos: 1,
            sender: bob.userId,
            type: 'm.x',
            content: '{}',
          })
          .execute();
        await db
          .insertInto('event_txn_ids')
          .values({ user_id: bob.userId, device_id: 'X', txn_id: 't', event_nid: 999_999, created_ts: 1 })
          .execute();
      });
      const text = await cli(['doctor', '--config', config, '--progress-every', '1']);
      assert.equal(text.code, 1);
      assert.match(
        text.out,
        new RegExp(`^event_json_unparsable\\t${room.replace(/[$]/g, '\\$')}\\t\\${ids.b}\\t`, 'm'),
      );
      assert.match(text.out, /^txn_id_dangling\t-\t-\t/m);
      assert.match(text.out, /^device_row_dangling\t-\t-\tto_device_messages row/m);
      assert.match(text.err, /doctor: 1\/1 rooms checked/);
      const json = await cli(['doctor', '--config', config, '--json', '--room', room]);
      assert.equal(json.code, 1);
      const report = JSON.parse(json.out) as { problems: { kind: string }[] };
      assert.ok(report.problems.some((p) => p.kind === 'event_json_unparsable'));
      const repaired = await cli(['doctor', '--config', config, '--repair']);
      assert.equal(repaired.code, 0, repaired.out + repaired.err);
      assert.equal((await cli(['doctor', '--config', config, '--repair'])).out, '');
      const q = await cli(['doctor', '--config', config, '--list-quarantine']);
      assert.equal(q.code, 0);
      assert.match(q.out, new RegExp(`^event\\t.*\\t\\${ids.b}\\t`, 'm'));
      assert.match(q.out, /^event_txn_ids\t/m);
      assert.match(q.out, /^to_device_messages\t/m);
      assert.equal((await cli(['doctor', '--config', config, '--room', '!nope:test.local'])).code, 2);
      assert.equal((await cli(['doctor', '--config', join(server.dataDir, 'missing.yaml')])).code, 2);
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
      assert.deepEqual(bodies(await allMessages(alice, room)), ['a', 'c', 'd']);
    });

    it('online: admin only; finds and repairs damage while serving; readers see the repair at once', async () => {
      const denied = await bob.post('/_hearth/admin/v1/doctor', { repair: false });
      assert.equal(denied.status, 403);
      const clean = await alice.post('/_hearth/admin/v1/doctor', {});
      assert.equal(clean.status, 200, JSON.stringify(clean.body));
      assert.equal(clean.body.clean, true, JSON.stringify(clean.body));
      // Warm the caches, then damage the live database behind the server's back.
      assert.deepEqual(await syncBodies(alice, room), ['a', 'c', 'd']);
      const e = await sendText(alice, room, 'e');
      await sendText(alice, room, 'f');
      const db = server.hs.storage.db;
      await db.deleteFrom('room_members').where('user_id', '=', bob.userId).execute();
      await db.deleteFrom('forward_extremities').execute();
      const found = await alice.post('/_hearth/admin/v1/doctor', { repair: false });
      assert.equal(found.status, 200);
      const kinds = new Set((found.body.problems as { kind: string }[]).map((p) => p.kind));
      assert.ok(
        kinds.has('room_members_mismatch') && kinds.has('forward_extremities_mismatch'),
        JSON.stringify(found.body),
      );
      // Writes keep flowing while the repair runs in the room's queue.
      const [fixed, g] = await Promise.all([
        alice.post('/_hearth/admin/v1/doctor', { repair: true }),
        sendText(alice, room, 'g'),
      ]);
      assert.equal(fixed.status, 200);
      assert.deepEqual(fixed.body.remaining, [], JSON.stringify(fixed.body));
      assert.ok(g && e);
      const again = await alice.post('/_hearth/admin/v1/doctor', { repair: true });
      assert.deepEqual(again.body.problems, []);
      assert.deepEqual(bodies(await allMessages(bob, room)), ['a', 'c', 'd', 'e', 'f', 'g']);
      const unknown = await alice.post('/_hearth/admin/v1/doctor', { room_id: '!nope:test.local' });
      assert.equal(unknown.status, 404);
    });

    it('backup while serving, restore into an empty database, doctor clean on the copy', async () => {
      mkdirSync(join(server.dataDir, 'media', 'ab'), { recursive: true });
      writeFileSync(join(server.dataDir, 'media', 'ab', 'file'), 'media bytes');
      const config = writeConfig(server);
      const out = join(server.dataDir, 'backup');
      const sending = (async () => {
        for (let i = 0; i < 10; i++) await sendText(alice, room, `during${i}`);
      })();
      const made = await cli(['backup', '--config', config, '--out', out]);
      await sending;
      assert.equal(made.code, 0, made.err);
      assert.ok(existsSync(join(out, 'signing.key')) && existsSync(join(out, 'homeserver.yaml')));
      assert.ok(existsSync(join(out, 'media', 'ab', 'file')));
      assert.equal(
        (await cli(['backup', '--config', config, '--out', out])).code,
        2,
        'refuses a non-empty target',
      );

      // Restore: refused into the live (non-empty) database, accepted into an empty one.
      const refused = await cli(['restore', '--config', config, '--from', out]);
      assert.equal(refused.code, 2);
      assert.match(refused.err, /not empty/);
      const target = await freshDatabase(engine);
      const dir = join(server.dataDir, 'restored');
      mkdirSync(dir);
      const restoredConfig = join(dir, 'homeserver.yaml');
      const { stringify } = await import('yaml');
      writeFileSync(
        restoredConfig,
        stringify({
          server_name: server.serverName,
          listeners: [{ port: 0, bind_addresses: ['127.0.0.1'] }],
          database: target.config,
          signing_key_path: join(dir, 'signing.key'),
          media_store_path: join(dir, 'media'),
          log_level: 'silent',
        }),
      );
      try {
        const restored = await cli(['restore', '--config', restoredConfig, '--from', out]);
        assert.equal(restored.code, 0, restored.out + restored.err);
        assert.match(restored.out, /doctor on the restored database: 0 problems/);
        assert.ok(existsSync(join(dir, 'signing.key')) && existsSync(join(dir, 'media', 'ab', 'file')));
        const copy = await startTestServer(engine, {}, { db: target, dataDir: dir });
        try {
          const c = copy.client(alice.token);
          const got = bodies(await allMessages(c, room));
          assert.deepEqual(got.slice(0, 6), ['a', 'c', 'd', 'e', 'f', 'g']);
        } finally {
          await copy.stop();
        }
        // The offline doctor, as an admin runs it, once the copy has served. (Not while it runs: in this one test
        // process a second SQLite connection waiting on a lock blocks the event loop, so the server's open
        // transaction could never commit until the busy timeout.)
        const report = await doctor(copy);
        assert.deepEqual(report.problems, []);
      } finally {
        await target.drop();
      }
    });
  });
}
