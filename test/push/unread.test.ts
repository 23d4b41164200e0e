/** unread_notifications in /sync from the user's push rules (src/sync/unread.ts). */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, mustJoin, putState, send, sync, text, type User } from '../sync/sync-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: unread counts from push rules`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('u_alice');
      bob = await server.user('u_bob');
    });
    after(() => server.close());

    const unread = async (user: User, room: string) =>
      mustJoin(await sync(user, { filter: { room: { rooms: [room] } } }), room).unread_notifications;

    it('notices, edits and reactions do not count; room mentions need the power; a muted room counts only overrides', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      const carol = await server.user('u_carol');
      await join(carol, room);
      await send(alice, room, { msgtype: 'm.notice', body: 'a notice' });
      const first = await text(alice, room, 'hello');
      await send(alice, room, {
        msgtype: 'm.text',
        body: '* hello!',
        'm.new_content': { msgtype: 'm.text', body: 'hello!' },
        'm.relates_to': { rel_type: 'm.replace', event_id: first },
      });
      await send(
        alice,
        room,
        { 'm.relates_to': { rel_type: 'm.annotation', event_id: first, key: '👍' } },
        'm.reaction',
      );
      // Alice (creator, power 100) may notify the room; Carol (power 0) may not.
      await send(alice, room, { msgtype: 'm.text', body: '@room hi', 'm.mentions': { room: true } });
      await send(carol, room, { msgtype: 'm.text', body: '@room hi', 'm.mentions': { room: true } });
      assert.deepEqual(await unread(bob, room), { notification_count: 3, highlight_count: 1 });
      // Topic changes match no default rule.
      await putState(alice, room, 'm.room.topic', { topic: 'x' });
      assert.deepEqual(await unread(bob, room), { notification_count: 3, highlight_count: 1 });
      const mute = await bob.put(`/_matrix/client/v3/pushrules/global/room/${enc(room)}`, { actions: [] });
      assert.equal(mute.status, 200);
      // Override rules rank above room rules: only the permitted @room mention still notifies.
      assert.deepEqual(await unread(bob, room), { notification_count: 1, highlight_count: 1 });
    });

    it('a content rule highlights on a keyword', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      const r = await bob.put('/_matrix/client/v3/pushrules/global/content/cake', {
        pattern: 'cake',
        actions: ['notify', { set_tweak: 'highlight' }],
      });
      assert.equal(r.status, 200);
      await text(alice, room, 'who wants CAKE?');
      await text(alice, room, 'cakes are not cake-less');
      await text(alice, room, 'pancakes');
      assert.deepEqual(await unread(bob, room), { notification_count: 3, highlight_count: 2 });
    });
  });
}
