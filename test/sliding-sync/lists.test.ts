/**
 * Simplified sliding sync (MSC4186) lists over HTTP on both engines: sort by bump stamp, ranges and counts,
 * timeline limits with limited/prev_batch/num_live, name/heroes/counts, and incremental answers carrying only the
 * rooms that changed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, putState, text, type User } from '../sync/sync-util.js';
import { bodiesOf, byBump, listBody, ss, ssRaw, stateKeysOf, V4_PATH, type SsResponse } from './ss-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: sliding sync lists`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    const rooms: string[] = [];

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ss_alice');
      bob = await server.user('ss_bob');
      await alice.put(`/_matrix/client/v3/profile/${enc(alice.userId)}/displayname`, {
        displayname: 'Alice A',
      });
      for (let i = 0; i < 5; i++) {
        const roomId = await createRoom(alice, { preset: 'public_chat' });
        await join(bob, roomId);
        rooms.push(roomId);
      }
      await putState(alice, rooms[0] as string, 'm.room.name', { name: 'Room zero' });
      // Oldest activity first: room 4 gets the last message, so the order is 4, 3, 2, 1, 0.
      for (const [i, roomId] of rooms.entries()) {
        for (let j = 0; j < 3; j++) await text(alice, roomId, `r${i}m${j}`);
      }
    });
    after(() => server.close());

    it('answers the top of the list by recency, with count, timeline limit, limited and prev_batch', async () => {
      const r = await ss(bob, listBody([0, 2], { timeline_limit: 2 }));
      assert.equal(r.lists.all?.count, 5);
      assert.deepEqual(Object.keys(r.rooms).sort(), [rooms[4], rooms[3], rooms[2]].sort());
      assert.deepEqual(byBump(r), [rooms[4], rooms[3], rooms[2]]);
      const top = r.rooms[rooms[4] as string];
      assert.ok(top);
      assert.equal(top.initial, true);
      assert.deepEqual(bodiesOf(top.timeline), ['r4m1', 'r4m2']);
      assert.equal(top.limited, true);
      assert.equal(top.num_live, 0);
      assert.equal(top.joined_count, 2);
      assert.equal(top.invited_count, 0);
      assert.equal(typeof top.notification_count, 'number');
      assert.equal(top.timeline?.[0]?.room_id, undefined, 'timeline events carry no room_id');
      // prev_batch paginates back from just before the first event of the timeline.
      const page = await bob.get(
        `/_matrix/client/v3/rooms/${enc(rooms[4] as string)}/messages?dir=b&limit=1&from=${enc(top.prev_batch as string)}`,
      );
      assert.equal(page.status, 200);
      assert.deepEqual(bodiesOf(page.body.chunk as never), ['r4m0']);
    });

    it('sends the room name, or heroes with display names when there is none', async () => {
      const r = await ss(bob, listBody([0, 4]));
      const named = r.rooms[rooms[0] as string];
      assert.equal(named?.name, 'Room zero');
      assert.equal(named?.heroes, undefined);
      const unnamed = r.rooms[rooms[1] as string];
      assert.equal(unnamed?.name, undefined);
      assert.deepEqual(unnamed?.heroes, [{ user_id: alice.userId, displayname: 'Alice A' }]);
    });

    it('answers only the rooms that changed, and moves a room that got a message to the top', async () => {
      const first = await ss(bob, listBody([0, 1], { timeline_limit: 5 }));
      assert.deepEqual(byBump(first), [rooms[4], rooms[3]]);
      const quiet = await ss(bob, listBody([0, 1], { timeline_limit: 5 }), { pos: first.pos });
      assert.deepEqual(quiet.rooms, {}, 'nothing changed');
      assert.equal(quiet.lists.all?.count, 5);
      await text(alice, rooms[4] as string, 'new in 4');
      const inc = await ss(bob, listBody([0, 1], { timeline_limit: 5 }), { pos: quiet.pos });
      assert.deepEqual(Object.keys(inc.rooms), [rooms[4]]);
      const delta = inc.rooms[rooms[4] as string];
      assert.equal(delta?.initial, undefined);
      assert.deepEqual(bodiesOf(delta?.timeline), ['new in 4']);
      assert.equal(delta?.limited, false);
      assert.equal(delta?.num_live, 1);
      // A message in room 1 (outside the window) brings it into [0,1] as a new room, and room 3 drops out.
      await text(alice, rooms[1] as string, 'wake 1');
      const moved = await ss(bob, listBody([0, 1], { timeline_limit: 5 }), { pos: inc.pos });
      assert.deepEqual(Object.keys(moved.rooms), [rooms[1]]);
      assert.equal(moved.rooms[rooms[1] as string]?.initial, true);
      assert.deepEqual(bodiesOf(moved.rooms[rooms[1] as string]?.timeline), [
        'r1m0',
        'r1m1',
        'r1m2',
        'wake 1',
      ]);
      assert.equal(moved.rooms[rooms[1] as string]?.num_live, 1);
      assert.ok(
        (moved.rooms[rooms[1] as string]?.bump_stamp ?? 0) > (delta?.bump_stamp ?? 0),
        'bump_stamp grows with activity',
      );
    });

    it('grows the range without sending again the rooms already sent', async () => {
      const first = await ss(bob, listBody([0, 1]));
      assert.equal(Object.keys(first.rooms).length, 2);
      const grown = await ss(bob, listBody([0, 4]), { pos: first.pos });
      assert.equal(Object.keys(grown.rooms).length, 3);
      for (const id of Object.keys(first.rooms)) assert.equal(grown.rooms[id], undefined);
    });

    it('sends more history when timeline_limit grows (unstable_expanded_timeline)', async () => {
      const first = await ss(bob, listBody([0, 0], { timeline_limit: 1 }));
      const [top] = Object.keys(first.rooms);
      assert.equal(first.rooms[top as string]?.timeline?.length, 1);
      const more = await ss(bob, listBody([0, 0], { timeline_limit: 3 }), { pos: first.pos });
      assert.equal(more.rooms[top as string]?.timeline?.length, 3);
      assert.equal(more.rooms[top as string]?.unstable_expanded_timeline, true);
    });

    it('sends state matching required_state, with $ME and wildcards, then only its changes', async () => {
      const body = listBody([0, 4], {
        required_state: [
          ['m.room.create', ''],
          ['m.room.member', '$ME'],
          ['m.room.topic', '*'],
        ],
      });
      const first = await ss(bob, body);
      const r0 = first.rooms[rooms[0] as string];
      assert.deepEqual(stateKeysOf(r0?.required_state), ['m.room.create|', `m.room.member|${bob.userId}`]);
      await putState(alice, rooms[0] as string, 'm.room.topic', { topic: 'hello' });
      await putState(alice, rooms[0] as string, 'm.room.join_rules', { join_rule: 'invite' });
      const inc = await ss(bob, body, { pos: first.pos });
      const d0 = inc.rooms[rooms[0] as string];
      assert.deepEqual(stateKeysOf(d0?.required_state), ['m.room.topic|']);
      // All state: every type and key.
      const all = await ss(bob, listBody([0, 4], { required_state: [['*', '*']] }));
      const keys = stateKeysOf(all.rooms[rooms[0] as string]?.required_state);
      for (const k of ['m.room.join_rules|', 'm.room.power_levels|', `m.room.member|${alice.userId}`])
        assert.ok(keys.includes(k), k);
    });

    it('sends the newly wanted state when required_state grows, without new events', async () => {
      const first = await ss(bob, listBody([0, 0], { required_state: [['m.room.create', '']] }));
      const [top] = Object.keys(first.rooms);
      const grown = await ss(
        bob,
        listBody([0, 0], {
          required_state: [
            ['m.room.create', ''],
            ['m.room.power_levels', ''],
          ],
        }),
        { pos: first.pos },
      );
      const room = grown.rooms[top as string];
      assert.ok(room, 'the room comes back for its new state');
      assert.deepEqual(stateKeysOf(room.required_state), ['m.room.power_levels|']);
      assert.deepEqual(room.timeline, [], 'no new events');
    });

    it('lazy-loads the memberships of timeline senders, once per connection', async () => {
      const body = listBody([0, 0], { timeline_limit: 1, required_state: [['m.room.member', '$LAZY']] });
      await text(alice, rooms[2] as string, 'lazy');
      const first = await ss(bob, body);
      const r2 = first.rooms[rooms[2] as string];
      assert.deepEqual(stateKeysOf(r2?.required_state), [`m.room.member|${alice.userId}`]);
      await text(alice, rooms[2] as string, 'lazy again');
      const inc = await ss(bob, body, { pos: first.pos });
      assert.deepEqual(inc.rooms[rooms[2] as string]?.required_state ?? [], [], 'already sent');
    });

    it('sorts by bump stamp (unstable API) or by any activity (v4)', async () => {
      const order = byBump(await ss(bob, listBody([0, 4])));
      const last = order[4] as string;
      await putState(alice, last, 'm.room.topic', { topic: 'not a bump' });
      const unstable = await ss(bob, listBody([0, 0]));
      assert.deepEqual(Object.keys(unstable.rooms), [order[0]], 'a topic change does not bump');
      const v4 = await bob.post(V4_PATH, {
        lists: { all: { range: [0, 0], timeline_limit: 1, required_state: {} } },
      });
      assert.equal(v4.status, 200, JSON.stringify(v4.body));
      assert.deepEqual(Object.keys((v4.body as unknown as SsResponse).rooms), [last]);
    });

    it('refuses malformed requests with Matrix errors', async () => {
      const bad = await ssRaw(bob, {
        lists: { a: { ranges: [[3, 1]], timeline_limit: 1, required_state: [] } },
      });
      assert.equal(bad.status, 400);
      assert.equal(typeof bad.body.errcode, 'string');
      const notInt = await ssRaw(bob, {
        lists: { a: { ranges: [[0, 1]], timeline_limit: 'x', required_state: [] } },
      });
      assert.equal(notInt.status, 400);
      const many: Record<string, unknown> = {};
      for (let i = 0; i < 101; i++)
        many[`l${i}`] = { ranges: [[0, 0]], timeline_limit: 1, required_state: [] };
      const tooMany = await ssRaw(bob, { lists: many });
      assert.equal(tooMany.status, 400);
      assert.equal(tooMany.body.errcode, 'M_INVALID_PARAM');
    });
  });
}
