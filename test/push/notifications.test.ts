/** GET /notifications from the user's push rules (src/api/client/notifications.ts). */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, post, send, text, type User } from '../sync/sync-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: GET /notifications`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('n_alice');
      bob = await server.user('n_bob');
    });
    after(() => server.close());

    const notifications = async (user: User, query = ''): Promise<Json> => {
      const res = await user.get(`/_matrix/client/v3/notifications${query}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    };
    const bodiesOf = (body: Json) =>
      (body.notifications as Json[]).map((n) => ((n.event as Json).content as Json).body);

    it('lists notifying events newest first, with read flags, highlights and pagination', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await text(alice, room, 'before bob joined');
      await join(bob, room);
      const one = await text(alice, room, 'one');
      await send(alice, room, { msgtype: 'm.notice', body: 'a notice' });
      await text(bob, room, 'my own');
      await send(alice, room, {
        msgtype: 'm.text',
        body: 'hey bob',
        'm.mentions': { user_ids: [bob.userId] },
      });
      await text(alice, room, 'three');
      await post(bob, `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(one)}`);

      const all = await notifications(bob);
      assert.deepEqual(bodiesOf(all), ['three', 'hey bob', 'one']);
      assert.equal(all.next_token, undefined);
      const list = all.notifications as Json[];
      assert.deepEqual(
        list.map((n) => n.read),
        [false, false, true],
      );
      for (const n of list) {
        assert.equal(n.room_id, room);
        assert.equal(typeof n.ts, 'number');
        assert.equal((n.event as Json).room_id, room);
      }
      assert.deepEqual(list[1]?.actions, [
        'notify',
        { set_tweak: 'sound', value: 'default' },
        { set_tweak: 'highlight' },
      ]);

      assert.deepEqual(bodiesOf(await notifications(bob, '?only=highlight')), ['hey bob']);

      const page1 = await notifications(bob, '?limit=2');
      assert.deepEqual(bodiesOf(page1), ['three', 'hey bob']);
      assert.equal(typeof page1.next_token, 'string');
      const page2 = await notifications(bob, `?limit=2&from=${enc(page1.next_token as string)}`);
      assert.deepEqual(bodiesOf(page2), ['one']);
      assert.equal(page2.next_token, undefined);

      // Alice is notified of Bob's message only (his join matches .m.rule.member_event).
      assert.deepEqual(bodiesOf(await notifications(alice)), ['my own']);
      const bad = await bob.get('/_matrix/client/v3/notifications?from=nope');
      assert.equal(bad.status, 400);
    });

    it('leaves out rooms the user has left', async () => {
      const carol = await server.user('n_carol');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(carol, room);
      await text(alice, room, 'hello carol');
      assert.deepEqual(bodiesOf(await notifications(carol)), ['hello carol']);
      await post(carol, `/_matrix/client/v3/rooms/${enc(room)}/leave`);
      assert.deepEqual(bodiesOf(await notifications(carol)), []);
    });
  });
}
