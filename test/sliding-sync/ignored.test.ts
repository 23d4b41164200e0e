/**
 * Sliding sync and m.ignored_user_list / invite blocking over HTTP on both engines (as /sync v2, see
 * src/sync/ignored.ts): invites from an ignored user are in no list, count and subscription (initial and
 * incremental), every stored invite is hidden while invites are blocked, and an ignored user's messages neither
 * reach the timeline, nor bring the room into an incremental response, nor count in notification_count.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, post, text, type User } from '../sync/sync-util.js';
import { bodiesOf, listBody, ss } from './ss-util.js';

async function putGlobal(u: User, type: string, content: Json): Promise<void> {
  const res = await u.put(`/_matrix/client/v3/user/${enc(u.userId)}/account_data/${type}`, content);
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

const ignore = (u: User, ids: string[]): Promise<void> =>
  putGlobal(u, 'm.ignored_user_list', { ignored_users: Object.fromEntries(ids.map((id) => [id, {}])) });

const inviteList = (conn: string): Json => listBody([0, 19], { conn_id: conn, filters: { is_invite: true } });

for (const engine of ENGINES) {
  describe(`${engine}: sliding sync and ignored users`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ssi_alice');
      bob = await server.user('ssi_bob');
      carol = await server.user('ssi_carol');
    });
    after(() => server.close());

    it('leaves out invites from ignored users, and every invite while invites are blocked', async () => {
      await ignore(alice, [bob.userId]);
      const byBob = await createRoom(bob);
      const byCarol = await createRoom(carol);
      await post(bob, `/_matrix/client/v3/rooms/${enc(byBob)}/invite`, { user_id: alice.userId });
      await post(carol, `/_matrix/client/v3/rooms/${enc(byCarol)}/invite`, { user_id: alice.userId });
      const body = {
        ...inviteList('inv'),
        room_subscriptions: { [byBob]: { timeline_limit: 1, required_state: [] } },
      };
      const first = await ss(alice, body);
      assert.ok(first.rooms[byCarol]?.invite_state, JSON.stringify(first.rooms));
      assert.equal(first.rooms[byBob], undefined, 'neither listed nor subscribed');
      assert.equal(first.lists.all?.count, 1);

      // Incremental: a new invite from the ignored user is not news; one from someone else is.
      const byBob2 = await createRoom(bob);
      await post(bob, `/_matrix/client/v3/rooms/${enc(byBob2)}/invite`, { user_id: alice.userId });
      const quiet = await ss(alice, body, { pos: first.pos });
      assert.deepEqual(Object.keys(quiet.rooms), []);
      assert.equal(quiet.lists.all?.count, 1);
      const byCarol2 = await createRoom(carol);
      await post(carol, `/_matrix/client/v3/rooms/${enc(byCarol2)}/invite`, { user_id: alice.userId });
      const inc = await ss(alice, body, { pos: quiet.pos });
      assert.deepEqual(Object.keys(inc.rooms), [byCarol2]);
      assert.equal(inc.lists.all?.count, 2);

      // Un-ignoring serves Bob's invites again, on a new connection and on the old one.
      await ignore(alice, []);
      const fresh = await ss(alice, inviteList('inv2'));
      assert.deepEqual(Object.keys(fresh.rooms).sort(), [byBob, byBob2, byCarol, byCarol2].sort());
      const resumed = await ss(alice, body, { pos: inc.pos });
      assert.ok(resumed.rooms[byBob]?.invite_state);
      assert.equal(resumed.lists.all?.count, 4);

      // Blocking invites hides the stored ones (all of them) until lifted.
      await putGlobal(alice, 'm.invite_permission_config', { default_action: 'block' });
      const blocked = await ss(alice, inviteList('inv3'));
      assert.deepEqual(Object.keys(blocked.rooms), []);
      assert.equal(blocked.lists.all?.count, 0);
      await putGlobal(alice, 'm.invite_permission_config', {});
      const lifted = await ss(alice, inviteList('inv4'));
      assert.equal(lifted.lists.all?.count, 4);
    });

    it('an ignored user’s messages are not in timelines, do not wake the room and do not count', async () => {
      const roomId = await createRoom(alice, { preset: 'public_chat', name: 'Ignoring' });
      await join(bob, roomId);
      await join(carol, roomId);
      await ignore(carol, [bob.userId]);
      await text(bob, roomId, 'bob 1');
      await text(alice, roomId, 'alice 1');
      await text(bob, roomId, 'bob 2');
      const body = listBody([0, 0], { conn_id: 'counts', timeline_limit: 10 });
      let r = await ss(carol, body);
      assert.deepEqual(bodiesOf(r.rooms[roomId]?.timeline), ['alice 1']);
      assert.equal(r.rooms[roomId]?.notification_count, 1);

      // Only the ignored user spoke: the room is not in the incremental response.
      await text(bob, roomId, 'bob 3');
      r = await ss(carol, body, { pos: r.pos });
      assert.equal(r.rooms[roomId], undefined, JSON.stringify(r.rooms));
      await text(alice, roomId, 'alice 2');
      r = await ss(carol, body, { pos: r.pos });
      assert.deepEqual(bodiesOf(r.rooms[roomId]?.timeline), ['alice 2']);
      assert.equal(r.rooms[roomId]?.notification_count, 2, 'the remembered count skips bob 3 as well');
      const fresh = await ss(carol, listBody([0, 0], { conn_id: 'counts-fresh' }));
      assert.equal(fresh.rooms[roomId]?.notification_count, 2);

      // Un-ignoring recounts the remembered window: Bob's three messages count again.
      await ignore(carol, []);
      await text(alice, roomId, 'alice 3');
      r = await ss(carol, body, { pos: r.pos });
      assert.deepEqual(bodiesOf(r.rooms[roomId]?.timeline), ['alice 3']);
      assert.equal(r.rooms[roomId]?.notification_count, 6);
    });
  });
}
