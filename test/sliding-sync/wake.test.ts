/**
 * Sliding sync costs and wake-ups over HTTP on both engines: a long-poll whose only news is a list's count (a room
 * joined or left outside the window) answers with the new count; the SQL statements of a response do not grow
 * with the rooms in its window (per-room reads are batched); notification counts stay right across the
 * incremental responses that reuse remembered counts (new messages, a mention, a read receipt), equal to /sync's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, post, send, sync, text, type User } from '../sync/sync-util.js';
import { FOLD_AT } from '../../src/storage/sliding-sync-connections.js';
import { bodiesOf, listBody, ss, ssRaw, type SsResponse } from './ss-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: sliding sync wake-ups and costs`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    const rooms: string[] = [];

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('w_alice');
      bob = await server.user('w_bob');
      for (let i = 0; i < 12; i++) {
        const id = await createRoom(alice, { preset: 'public_chat', name: `W${i}` });
        await join(bob, id);
        await text(alice, id, `hello ${i}`);
        rooms.push(id);
      }
    });
    after(() => server.close());

    /** Statements run outside transactions while `fn` runs. */
    async function statements(fn: () => Promise<unknown>): Promise<number> {
      const executor = server.hs.storage.db.getExecutor();
      const original = executor.executeQuery.bind(executor);
      let n = 0;
      executor.executeQuery = (q) => {
        n++;
        return original(q);
      };
      try {
        await fn();
      } finally {
        executor.executeQuery = original;
      }
      return n;
    }

    it('answers a long-poll whose only change is a list count (a room joined, then left, outside the window)', async () => {
      const outside = await createRoom(alice, { preset: 'public_chat', name: 'outside' });
      // Every room of the list gets a newer message, so `outside` (only its creation) sorts last.
      for (const id of rooms) await text(alice, id, 'newer');
      const body = listBody([0, 2], { conn_id: 'count' });
      const first = await ss(bob, body);
      assert.equal(first.lists.all?.count, 12);

      const t0 = Date.now();
      const polling = ss(bob, body, { pos: first.pos, timeout: 20_000 });
      await new Promise((r) => setTimeout(r, 200));
      await join(bob, outside);
      const joined = await polling;
      assert.ok(Date.now() - t0 < 10_000, 'answered on the join, not at the timeout');
      assert.equal(joined.lists.all?.count, 13);
      assert.deepEqual(Object.keys(joined.rooms), [], 'the joined room is outside the window');

      const polling2 = ss(bob, body, { pos: joined.pos, timeout: 20_000 });
      await new Promise((r) => setTimeout(r, 200));
      await post(bob, `/_matrix/client/v3/rooms/${enc(outside)}/leave`);
      const left = await polling2;
      assert.ok(Date.now() - t0 < 20_000);
      assert.equal(left.lists.all?.count, 12);

      // Nothing changed: an empty long-poll still waits for its timeout.
      const t1 = Date.now();
      const idle = await ss(bob, body, { pos: left.pos, timeout: 300 });
      assert.ok(Date.now() - t1 >= 250, 'no count change: waited');
      assert.equal(idle.lists.all?.count, 12);
    });

    it('keeps what a connection sent over more requests than a chain of positions holds (folded)', async () => {
      const body = listBody([0, 2], { conn_id: 'fold', required_state: [['m.room.name', '']] });
      let r = await ss(bob, body);
      const window = Object.keys(r.rooms);
      assert.equal(window.length, 3);
      for (let i = 0; i < 2 * FOLD_AT + 3; i++) {
        const room = window[i % 3] as string;
        await text(alice, room, `fold ${i}`);
        r = await ss(bob, body, { pos: r.pos });
        assert.deepEqual(Object.keys(r.rooms), [room], `step ${i}`);
        const got = r.rooms[room];
        assert.equal(got?.initial, undefined, `step ${i}: the room is not sent as new again`);
        assert.equal(got?.required_state?.length, 0, `step ${i}: unchanged state is not sent again`);
        assert.deepEqual(bodiesOf(got?.timeline), [`fold ${i}`]);
      }
      const positions = await server.hs.storage.db
        .selectFrom('sliding_sync_positions as p')
        .innerJoin('sliding_sync_connections as c', 'c.conn_nid', 'p.conn_nid')
        .select('p.pos_nid')
        .where('c.conn_id', '=', 'fold')
        .execute();
      assert.ok(positions.length <= FOLD_AT + 1, `${positions.length} positions kept`);
    });

    it('saves the positions of long-polls woken together (one reset meanwhile fails alone)', async () => {
      const room = rooms[1] as string;
      const conns = ['g0', 'g1', 'g2', 'g3', 'g4'];
      const firsts = await Promise.all(conns.map((c) => ss(bob, listBody([0, 19], { conn_id: c }))));
      const polls = conns.map((c, i) =>
        ssRaw(bob, listBody([0, 19], { conn_id: c }), { pos: firsts[i]?.pos, timeout: 20_000 }),
      );
      await new Promise((r) => setTimeout(r, 300));
      // g4 starts afresh while its long-poll waits: that poll's answer can no longer be continued.
      await ss(bob, listBody([0, 19], { conn_id: 'g4' }));
      await text(alice, room, 'together');
      const answers = await Promise.all(polls);
      assert.equal(answers[4]?.status, 400);
      assert.equal(answers[4]?.body.errcode, 'M_UNKNOWN_POS');
      for (let i = 0; i < 4; i++) {
        const a = answers[i];
        assert.equal(a?.status, 200, JSON.stringify(a?.body));
        const body = a?.body as unknown as SsResponse;
        assert.deepEqual(bodiesOf(body.rooms[room]?.timeline), ['together']);
        // The saved position continues: nothing new, and the room is not sent as new again.
        await text(alice, room, `after ${i}`);
        const next = await ss(bob, listBody([0, 19], { conn_id: conns[i] as string }), { pos: body.pos });
        assert.deepEqual(Object.keys(next.rooms), [room]);
        assert.equal(next.rooms[room]?.initial, undefined);
        assert.deepEqual(bodiesOf(next.rooms[room]?.timeline), [`after ${i}`]);
      }
    });

    it('runs as many statements for 12 rooms in the window as for 2', async () => {
      const req = (n: number, conn: string) => ({
        ...listBody([0, n - 1], {
          conn_id: conn,
          timeline_limit: 2,
          required_state: [
            ['m.room.name', ''],
            ['m.room.member', '$ME'],
          ],
        }),
      });
      // Warm the caches of both shapes first (the counts below compare the steady state).
      await ss(bob, req(2, 'warm2'));
      await ss(bob, req(12, 'warm12'));
      let res12: Awaited<ReturnType<typeof ss>> | undefined;
      const small = await statements(() => ss(bob, req(2, 'small')));
      const large = await statements(async () => {
        res12 = await ss(bob, req(12, 'large'));
      });
      assert.equal(Object.keys(res12?.rooms ?? {}).length, 12);
      for (const r of Object.values(res12?.rooms ?? {})) {
        assert.equal(r.timeline?.length, 2);
        assert.equal(r.joined_count, 2);
        assert.ok(r.name?.startsWith('W'));
      }
      assert.ok(large <= small, `12 rooms: ${large} statements, 2 rooms: ${small}`);
    });

    it('keeps notification and highlight counts equal to /sync across incremental responses', async () => {
      const room = rooms[0] as string;
      const body = listBody([0, 19], { conn_id: 'unread' });
      const syncCounts = async () => {
        const s = await sync(bob, {});
        const joinRooms = (s.rooms as { join: Record<string, { unread_notifications: object }> }).join;
        return joinRooms[room]?.unread_notifications;
      };
      const ssCounts = (r: Awaited<ReturnType<typeof ss>>) => ({
        notification_count: r.rooms[room]?.notification_count,
        highlight_count: r.rooms[room]?.highlight_count,
      });
      let r = await ss(bob, body);
      assert.deepEqual(ssCounts(r), await syncCounts());
      const before = r.rooms[room]?.notification_count ?? 0;
      assert.ok(before >= 2);

      await text(alice, room, 'one more');
      r = await ss(bob, body, { pos: r.pos });
      assert.equal(r.rooms[room]?.notification_count, before + 1);
      assert.equal(r.rooms[room]?.highlight_count, 0);

      await send(alice, room, { msgtype: 'm.text', body: 'look', 'm.mentions': { user_ids: [bob.userId] } });
      r = await ss(bob, body, { pos: r.pos });
      assert.equal(r.rooms[room]?.notification_count, before + 2);
      assert.equal(r.rooms[room]?.highlight_count, 1, 'a mention highlights');
      assert.deepEqual(ssCounts(r), await syncCounts());

      const last = await text(alice, room, 'last');
      await post(bob, `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(last)}`);
      await text(alice, room, 'after the receipt');
      r = await ss(bob, body, { pos: r.pos });
      assert.equal(r.rooms[room]?.notification_count, 1, 'only the message after the receipt');
      assert.equal(r.rooms[room]?.highlight_count, 0);
      assert.deepEqual(ssCounts(r), await syncCounts());
    });
  });
}
