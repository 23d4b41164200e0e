/**
 * Sliding sync connections over HTTP on both engines: conn_id separation, M_UNKNOWN_POS for positions that are not
 * the connection's, a retried request with the same pos, long-polling (woken by a message, or timing out empty), and
 * a server restart in the middle of a connection that resumes with deltas.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, join, text, type User } from '../sync/sync-util.js';
import { bodiesOf, listBody, ss, ssRaw, type SsResponse } from './ss-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: sliding sync connections`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let roomA: string;
    let roomB: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('c_alice');
      bob = await server.user('c_bob');
      roomA = await createRoom(alice, { preset: 'public_chat' });
      roomB = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, roomA);
      await join(bob, roomB);
      await text(alice, roomA, 'a0');
      await text(alice, roomB, 'b0');
    });
    after(() => server.close());

    it('keeps connections with different conn_id apart', async () => {
      const one = await ss(bob, listBody([0, 9], { conn_id: 'one' }));
      const two = await ss(bob, listBody([0, 9], { conn_id: 'two' }));
      assert.equal(Object.keys(one.rooms).length, 2);
      assert.equal(Object.keys(two.rooms).length, 2);
      await text(alice, roomA, 'a1');
      const oneInc = await ss(bob, listBody([0, 9], { conn_id: 'one' }), { pos: one.pos });
      assert.deepEqual(Object.keys(oneInc.rooms), [roomA]);
      // Connection two has not seen a1 either: its own state is untouched by connection one's answer.
      const twoInc = await ss(bob, listBody([0, 9], { conn_id: 'two' }), { pos: two.pos });
      assert.deepEqual(bodiesOf(twoInc.rooms[roomA]?.timeline), ['a1']);
      // A pos of connection one is unknown on connection two.
      const cross = await ssRaw(bob, listBody([0, 9], { conn_id: 'two' }), { pos: oneInc.pos, timeout: 0 });
      assert.equal(cross.status, 400);
      assert.equal(cross.body.errcode, 'M_UNKNOWN_POS');
    });

    it("answers M_UNKNOWN_POS for unknown, malformed, other users' and superseded positions", async () => {
      const mine = await ss(bob, listBody([0, 9]));
      for (const pos of ['s1_0_999999', 'garbage', 's5']) {
        const res = await ssRaw(bob, listBody([0, 9]), { pos, timeout: 0 });
        assert.equal(res.status, 400, pos);
        assert.equal(res.body.errcode, 'M_UNKNOWN_POS', pos);
      }
      const stolen = await ssRaw(alice, listBody([0, 9]), { pos: mine.pos, timeout: 0 });
      assert.equal(
        stolen.body.errcode,
        'M_UNKNOWN_POS',
        'a pos is only valid for the user and device it was issued to',
      );
      // A new connection (no pos) with the same conn_id replaces the old one.
      await ss(bob, listBody([0, 9]));
      const old = await ssRaw(bob, listBody([0, 9]), { pos: mine.pos, timeout: 0 });
      assert.equal(old.body.errcode, 'M_UNKNOWN_POS');
    });

    it('expires a connection unused for a week', async () => {
      const first = await ss(bob, listBody([0, 9], { conn_id: 'old' }));
      await server.hs.storage.db.updateTable('sliding_sync_connections').set({ last_used_ts: 0 }).execute();
      const res = await ssRaw(bob, listBody([0, 9], { conn_id: 'old' }), { pos: first.pos, timeout: 0 });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_UNKNOWN_POS');
      const again = await ss(bob, listBody([0, 9], { conn_id: 'old' }));
      assert.equal(Object.keys(again.rooms).length, 2, 'a new connection starts from scratch');
    });

    it('answers a retried request with the same pos the same way, and forgets the unprocessed answer', async () => {
      const first = await ss(bob, listBody([0, 9], { conn_id: 'retry' }));
      await text(alice, roomB, 'b-retry');
      const lost = await ss(bob, listBody([0, 9], { conn_id: 'retry' }), { pos: first.pos });
      assert.deepEqual(bodiesOf(lost.rooms[roomB]?.timeline), ['b-retry']);
      // The client never processed `lost`: retrying with first.pos sends the same message again.
      const again = await ss(bob, listBody([0, 9], { conn_id: 'retry' }), { pos: first.pos });
      assert.deepEqual(bodiesOf(again.rooms[roomB]?.timeline), ['b-retry']);
      const next = await ss(bob, listBody([0, 9], { conn_id: 'retry' }), { pos: again.pos });
      assert.deepEqual(next.rooms, {});
      // `lost` was superseded by the retry.
      const stale = await ssRaw(bob, listBody([0, 9], { conn_id: 'retry' }), { pos: lost.pos, timeout: 0 });
      assert.equal(stale.body.errcode, 'M_UNKNOWN_POS');
    });

    it('long-polls until a message arrives in a room of the list', async () => {
      const first = await ss(bob, listBody([0, 9], { conn_id: 'poll' }));
      const started = Date.now();
      const pending = ss(bob, listBody([0, 9], { conn_id: 'poll' }), { pos: first.pos, timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 100));
      await text(alice, roomA, 'wake');
      const woken: SsResponse = await pending;
      assert.ok(Date.now() - started < 5000, 'answered when woken, not at the timeout');
      assert.deepEqual(bodiesOf(woken.rooms[roomA]?.timeline), ['wake']);
      assert.equal(woken.rooms[roomA]?.num_live, 1);
      // Nothing new: the long-poll answers empty at its timeout, with a new pos that works.
      const t0 = Date.now();
      const empty = await ss(bob, listBody([0, 9], { conn_id: 'poll' }), { pos: woken.pos, timeout: 300 });
      assert.ok(Date.now() - t0 >= 280, 'waited for the timeout');
      assert.deepEqual(empty.rooms, {});
      assert.notEqual(empty.pos, woken.pos);
      const after2 = await ss(bob, listBody([0, 9], { conn_id: 'poll' }), { pos: empty.pos });
      assert.deepEqual(after2.rooms, {});
    });

    it('wakes a long-poll when the user is invited to a new room', async () => {
      const first = await ss(bob, listBody([0, 9], { conn_id: 'invite' }));
      const pending = ss(bob, listBody([0, 9], { conn_id: 'invite' }), { pos: first.pos, timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 100));
      const roomC = await createRoom(alice, { invite: [bob.userId] });
      const woken = await pending;
      assert.ok(woken.rooms[roomC]?.invite_state, JSON.stringify(woken.rooms));
    });

    it('resumes a connection after a restart with deltas only', async () => {
      const first = await ss(bob, listBody([0, 9], { conn_id: 'restart', timeline_limit: 5 }));
      await text(alice, roomA, 'before restart');
      const mid = await ss(bob, listBody([0, 9], { conn_id: 'restart', timeline_limit: 5 }), {
        pos: first.pos,
      });
      assert.deepEqual(bodiesOf(mid.rooms[roomA]?.timeline), ['before restart']);
      await server.stop();
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      bob.baseUrl = server.url;
      alice.baseUrl = server.url;
      await text(alice, roomB, 'after restart');
      const resumed = await ss(bob, listBody([0, 9], { conn_id: 'restart', timeline_limit: 5 }), {
        pos: mid.pos,
      });
      assert.deepEqual(Object.keys(resumed.rooms), [roomB]);
      assert.equal(resumed.rooms[roomB]?.initial, undefined);
      assert.deepEqual(bodiesOf(resumed.rooms[roomB]?.timeline), ['after restart']);
    });
  });
}
