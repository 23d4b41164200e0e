/**
 * Damaged rows behind sliding sync's back (as test/sync/damage.test.ts does for /sync): unreadable event JSON, a
 * missing state snapshot, a dangling current-state entry and unreadable per-connection state. The restarted server
 * answers 200 with every undamaged event and records what it skipped.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openKysely } from '../../src/storage/db.js';
import { damage } from '../helpers/damage.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, join, putState, text, type User } from '../sync/sync-util.js';
import { bodiesOf, listBody, ss, stateKeysOf } from './ss-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: damaged rows do not break sliding sync`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let roomId: string;
    let pos: string;
    const ids: Record<string, string> = {};
    const body = listBody([0, 9], {
      timeline_limit: 50,
      required_state: [
        ['m.room.name', ''],
        ['m.room.topic', ''],
        ['m.room.member', '$LAZY'],
      ],
    });

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('sd_alice');
      bob = await server.user('sd_bob');
      roomId = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, roomId);
      ids.topic = await putState(alice, roomId, 'm.room.topic', { topic: 't' });
      ids.name = await putState(alice, roomId, 'm.room.name', { name: 'n' });
      for (let i = 0; i < 6; i++) ids[`m${i}`] = await text(alice, roomId, `m${i}`);
      pos = (await ss(bob, body)).pos;
      await server.stop();
      await damage(server, async (db) => {
        await db
          .updateTable('events')
          .set({ json: '{not json' })
          .where('event_id', '=', ids.m2 as string)
          .execute();
        await db
          .updateTable('events')
          .set({ json: '' })
          .where('event_id', '=', ids.name as string)
          .execute();
        await db
          .updateTable('events')
          .set({ state_snapshot_nid: null })
          .where('event_id', '=', ids.m4 as string)
          .execute();
        await db
          .updateTable('current_state')
          .set({ event_nid: 999_999_999 })
          .where('type', '=', 'm.room.topic')
          .execute();
        // The connection's memory of what it sent is unreadable.
        await db.updateTable('sliding_sync_rooms').set({ required_state: '{', lazy_members: 'x' }).execute();
      });
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
    });
    after(() => server.close());

    it('serves a new connection with every undamaged event', async () => {
      const r = await ss(bob, { ...body, conn_id: 'new' });
      const room = r.rooms[roomId];
      assert.ok(room);
      assert.deepEqual(bodiesOf(room.timeline), ['m0', 'm1', 'm3', 'm4', 'm5']);
      assert.ok(!stateKeysOf(room.required_state).includes('m.room.name|'), 'the unreadable name is skipped');
    });

    it('resumes the damaged connection without a 500', async () => {
      await text(alice, roomId, 'after');
      const r = await ss(bob, body, { pos });
      assert.deepEqual(bodiesOf(r.rooms[roomId]?.timeline), ['after']);
    });

    it('records what it skipped for the doctor', async () => {
      await server.stop();
      const db = openKysely(server.db.config);
      try {
        const rows = await db.selectFrom('damage_reports').selectAll().execute();
        assert.ok(
          rows.some((r) => r.kind === 'event_json_unparsable' && r.event_id === ids.m2),
          JSON.stringify(rows),
        );
        assert.ok(
          rows.some((r) => r.kind === 'state_entry_dangling'),
          JSON.stringify(rows),
        );
      } finally {
        await db.destroy();
      }
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
    });
  });
}
