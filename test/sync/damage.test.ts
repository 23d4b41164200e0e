/**
 * The origin failure of Hearth: rows damaged behind the server's back (a bad restore, manual SQL) must not break
 * /sync or pagination. Each damage is applied with SQL to a stopped server's database, then the restarted server
 * must answer 200 with every undamaged event, and record what it skipped.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openKysely } from '../../src/storage/db.js';
import { damage } from '../helpers/damage.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type Timeline = { timeline: { events: Json[] } };

const bodies = (events: Json[]): string[] =>
  events.filter((e) => e.type === 'm.room.message').map((e) => (e.content as Json).body as string);

for (const engine of ENGINES) {
  describe(`${engine}: damaged rows do not break sync or pagination`, () => {
    let server: TestServer;
    let alice: Client & { userId: string; deviceId: string };
    let bob: Client & { userId: string; deviceId: string };
    let roomId: string;
    let otherRoom: string;
    const ids: Record<string, string> = {};

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('d_alice');
      bob = await server.user('d_bob');
      roomId = (await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
        .room_id as string;
      otherRoom = (await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
        .room_id as string;
      const rid = encodeURIComponent(roomId);
      await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
      await bob.post(`/_matrix/client/v3/rooms/${encodeURIComponent(otherRoom)}/join`, {});
      ids.topic = (await alice.put(`/_matrix/client/v3/rooms/${rid}/state/m.room.topic`, { topic: 't' })).body
        .event_id as string;
      ids.name = (await alice.put(`/_matrix/client/v3/rooms/${rid}/state/m.room.name`, { name: 'n' })).body
        .event_id as string;
      for (let i = 0; i < 10; i++) {
        const res = await alice.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/dm${i}`, {
          msgtype: 'm.text',
          body: `m${i}`,
        });
        ids[`m${i}`] = res.body.event_id as string;
      }
      await alice.put(`/_matrix/client/v3/rooms/${encodeURIComponent(otherRoom)}/send/m.room.message/o1`, {
        msgtype: 'm.text',
        body: 'other',
      });
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
          .where('event_id', '=', ids.m4 as string)
          .execute();
        await db
          .updateTable('events')
          .set({ state_snapshot_nid: null })
          .where('event_id', '=', ids.m6 as string)
          .execute();
        // The snapshot before the name event is the one the topic event created: delete it and its entries.
        const nameRow = await db
          .selectFrom('events')
          .select('state_snapshot_nid')
          .where('event_id', '=', ids.name as string)
          .executeTakeFirstOrThrow();
        const snap = Number(nameRow.state_snapshot_nid);
        await db.deleteFrom('state_snapshot_entries').where('snapshot_nid', '=', snap).execute();
        await db.deleteFrom('state_snapshots').where('snapshot_nid', '=', snap).execute();
        await db.deleteFrom('room_members').where('user_id', '=', bob.userId).execute();
        // A current-state entry pointing at an event that is gone.
        await db
          .updateTable('current_state')
          .set({ event_nid: 999_999_999 })
          .where('type', '=', 'm.room.topic')
          .execute();
      });
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
    });
    after(() => server.close());

    const undamaged = ['m0', 'm1', 'm3', 'm5', 'm7', 'm8', 'm9'];
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 50 } } }));

    it('serves initial and incremental sync with every undamaged event', async () => {
      const initial = await alice.get(`/_matrix/client/v3/sync?filter=${filter}`);
      assert.equal(initial.status, 200, JSON.stringify(initial.body));
      const join = (initial.body.rooms as Json).join as Record<string, Timeline>;
      assert.deepEqual(bodies(join[roomId]?.timeline.events ?? []), undamaged);
      assert.deepEqual(bodies(join[otherRoom]?.timeline.events ?? []), ['other']);

      const rid = encodeURIComponent(roomId);
      const sent = await alice.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/after1`, {
        msgtype: 'm.text',
        body: 'after',
      });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      const inc = await alice.get(
        `/_matrix/client/v3/sync?since=${initial.body.next_batch as string}&timeout=0`,
      );
      assert.equal(inc.status, 200);
      const incJoin = (inc.body.rooms as Json).join as Record<string, Timeline>;
      assert.deepEqual(bodies(incJoin[roomId]?.timeline.events ?? []), ['after']);
    });

    it('paginates /messages past the damaged rows', async () => {
      const rid = encodeURIComponent(roomId);
      const seen: string[] = [];
      let from: string | undefined;
      for (let page = 0; page < 20; page++) {
        const res = await alice.get(
          `/_matrix/client/v3/rooms/${rid}/messages?dir=b&limit=3${from ? `&from=${from}` : ''}`,
        );
        assert.equal(res.status, 200, JSON.stringify(res.body));
        seen.push(...bodies(res.body.chunk as Json[]));
        if (!res.body.end) break;
        from = res.body.end as string;
      }
      assert.deepEqual(seen.reverse(), [...undamaged, 'after']);
    });

    it('keeps serving a user whose membership row was deleted', async () => {
      const res = await bob.get('/_matrix/client/v3/sync');
      assert.equal(res.status, 200);
    });

    it('records what it skipped for the doctor', async () => {
      await server.stop();
      const db = openKysely(server.db.config);
      try {
        const rows = await db.selectFrom('damage_reports').selectAll().execute();
        const kinds = new Set(rows.map((r) => r.kind));
        assert.ok(kinds.has('event_json_unparsable'), JSON.stringify(rows));
        assert.ok(rows.some((r) => r.event_id === ids.m2));
        assert.ok(kinds.has('state_snapshot_missing'), JSON.stringify(rows));
      } finally {
        await db.destroy();
      }
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
    });
  });
}
