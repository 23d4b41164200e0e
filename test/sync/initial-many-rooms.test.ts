/**
 * An initial /sync over many rooms reads their timelines and the device's transaction ids ahead, a few statements
 * for all rooms (sync/joined-room.ts prefetchTimelines): each room still gets its own latest events, `limited` and
 * `prev_batch`, and only the sending device sees its transaction ids; a timeline filter that narrows the events
 * takes the per-room path with the same results. Both engines.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { Client, startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, join, sync, text, type SyncRoom, type User } from './sync-util.js';

const joinOf = (body: Json, roomId: string): SyncRoom => {
  const room = ((body.rooms as Json | undefined)?.join as Record<string, SyncRoom> | undefined)?.[roomId];
  assert.ok(room, `room ${roomId} in rooms.join`);
  return room;
};

const messages = (room: SyncRoom): { body: unknown; txn: unknown }[] =>
  room.timeline.events
    .filter((e) => e.type === 'm.room.message')
    .map((e) => ({
      body: (e.content as Json).body,
      txn: (e.unsigned as Json | undefined)?.transaction_id,
    }));

for (const engine of ENGINES) {
  describe(`${engine}: initial /sync over many rooms`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let quiet: string;
    let busy: string;
    let bobs: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('im_alice');
      bob = await server.user('im_bob');
      quiet = await createRoom(alice, { preset: 'public_chat' });
      busy = await createRoom(alice, { preset: 'public_chat' });
      bobs = await createRoom(bob, { preset: 'public_chat' });
      await join(alice, bobs);
      await join(bob, quiet);
      await text(alice, quiet, 'quiet 0');
      await text(bob, quiet, 'quiet 1');
      for (let i = 0; i < 12; i++) await text(alice, busy, `busy ${i}`);
      await text(bob, bobs, 'from bob');
    });
    after(() => server.close());

    it("gives each room its own latest events, limited flag and the sender's transaction ids", async () => {
      const body = await sync(alice);
      const q = joinOf(body, quiet);
      assert.deepEqual(
        messages(q).map((m) => m.body),
        ['quiet 0', 'quiet 1'],
      );
      assert.equal(typeof messages(q)[0]?.txn, 'string', 'own event carries its transaction id');
      assert.equal(messages(q)[1]?.txn, undefined, "another user's event carries none");
      assert.equal(q.timeline.limited, false, 'the whole room fits in the timeline');
      assert.equal(q.timeline.events[0]?.type, 'm.room.create');

      const b = joinOf(body, busy);
      assert.equal(b.timeline.events.length, 10);
      assert.deepEqual(
        messages(b).map((m) => m.body),
        Array.from({ length: 10 }, (_, i) => `busy ${i + 2}`),
      );
      assert.ok(messages(b).every((m) => typeof m.txn === 'string'));
      assert.equal(b.timeline.limited, true);
      assert.equal(typeof b.timeline.prev_batch, 'string');

      const o = joinOf(body, bobs);
      assert.deepEqual(messages(o), [{ body: 'from bob', txn: undefined }]);

      // A narrower limit applies to every room.
      const two = await sync(alice, { filter: { room: { timeline: { limit: 2 } } } });
      for (const id of [quiet, busy, bobs]) assert.equal(joinOf(two, id).timeline.events.length, 2);
      assert.deepEqual(
        messages(joinOf(two, busy)).map((m) => m.body),
        ['busy 10', 'busy 11'],
      );
    });

    it('shows transaction ids to the sending device only', async () => {
      const login = await new Client(server.url).post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'im_alice' },
        password: 'correct horse battery staple',
      });
      assert.equal(login.status, 200);
      const other = new Client(server.url, login.body.access_token as string);
      const body = await sync(other);
      const busyMessages = messages(joinOf(body, busy));
      assert.equal(busyMessages.length, 10);
      assert.ok(busyMessages.every((m) => m.txn === undefined));
    });

    it('reads each room on its own under a timeline filter, with the same results', async () => {
      const filter = { room: { timeline: { types: ['m.room.message'], limit: 3 } } };
      const body = await sync(alice, { filter });
      const b = joinOf(body, busy);
      assert.deepEqual(
        messages(b).map((m) => m.body),
        ['busy 9', 'busy 10', 'busy 11'],
      );
      assert.ok(messages(b).every((m) => typeof m.txn === 'string'));
      assert.equal(b.timeline.limited, true);
      assert.deepEqual(
        messages(joinOf(body, quiet)).map((m) => m.body),
        ['quiet 0', 'quiet 1'],
      );
      assert.equal(joinOf(body, quiet).timeline.limited, false);
    });
  });
}
