/**
 * unread_notifications across incremental syncs: /sync remembers each room's counted window and evaluates only the
 * events since (src/sync/unread-memory.ts). The counts must stay those of a fresh count: new messages add, a read
 * receipt drops what it covers, a redaction drops the redacted message, a power change made after earlier counts
 * applies to later messages, and a fresh initial sync agrees with the incremental one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, mustJoin, putState, sync, syncSince, text, type User } from './sync-util.js';
import type { Json } from '../helpers/server.js';

for (const engine of ENGINES) {
  describe(`${engine}: unread counts across incremental syncs`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ui_alice');
      bob = await server.user('ui_bob');
      carol = await server.user('ui_carol');
    });
    after(() => server.close());

    const counts = (body: Json, room: string) => mustJoin(body, room).unread_notifications;
    const fresh = async (room: string) =>
      counts(await sync(bob, { filter: { room: { rooms: [room] } } }), room);

    it('adds new messages, drops what a receipt covers and a redacted message', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await join(carol, room);
      let body = await sync(bob);
      for (const t of ['one', 'two', 'three']) await text(alice, room, t);
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 3, highlight_count: 0 });
      const fourth = await text(alice, room, 'four');
      await text(carol, room, 'five');
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 5, highlight_count: 0 });
      const receipt = await bob.post(
        `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(fourth)}`,
        {},
      );
      assert.equal(receipt.status, 200);
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 1, highlight_count: 0 });
      const six = await text(alice, room, 'six');
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 2, highlight_count: 0 });
      const redacted = await alice.put(`/_matrix/client/v3/rooms/${enc(room)}/redact/${enc(six)}/r1`, {});
      assert.equal(redacted.status, 200);
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 1, highlight_count: 0 });
      assert.deepEqual(await fresh(room), { notification_count: 1, highlight_count: 0 });
    });

    it('goes on from a receipt on an event the remembered window never reached', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      let body = await sync(bob);
      await text(alice, room, 'counted');
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 1, highlight_count: 0 });
      // Messages the window has not seen, a receipt on the last of them, then one more.
      await text(alice, room, 'unseen one');
      const unseen = await text(alice, room, 'unseen two');
      const receipt = await bob.post(
        `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(unseen)}`,
        {},
      );
      assert.equal(receipt.status, 200);
      await text(alice, room, 'after the receipt');
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 1, highlight_count: 0 });
      assert.deepEqual(await fresh(room), { notification_count: 1, highlight_count: 0 });
    });

    it("does not count an ignored user's messages, and counts them again once un-ignored", async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await join(carol, room);
      let body = await sync(bob);
      await text(alice, room, 'from alice');
      await text(carol, room, 'from carol');
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 2, highlight_count: 0 });
      const ignore = (users: string[]) =>
        bob.put(`/_matrix/client/v3/user/${enc(bob.userId)}/account_data/m.ignored_user_list`, {
          ignored_users: Object.fromEntries(users.map((u) => [u, {}])),
        });
      assert.equal((await ignore([carol.userId])).status, 200);
      await text(carol, room, 'carol again');
      await text(alice, room, 'alice again');
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 2, highlight_count: 0 });
      assert.deepEqual(await fresh(room), { notification_count: 2, highlight_count: 0 });
      assert.equal((await ignore([])).status, 200);
      await text(alice, room, 'alice third');
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 5, highlight_count: 0 });
    });

    // The room change cache keeps the latest 20 events of a room: a longer run between two syncs is read from the
    // database, a shorter one from memory; both must count the same, and never the reader's own messages.
    it("counts the same past the events the server keeps in memory, and never the reader's own", async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      let body = await sync(bob);
      for (let i = 0; i < 25; i++) await text(alice, room, `burst ${i}`);
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 25, highlight_count: 0 });
      await text(alice, room, 'one more');
      await text(bob, room, 'my own');
      await text(alice, room, 'and another');
      body = await syncSince(bob, body);
      // Bob's own message counts nothing, and (as a message of his) does not clear the count either.
      assert.deepEqual(counts(body, room), { notification_count: 27, highlight_count: 0 });
      assert.deepEqual(await fresh(room), { notification_count: 27, highlight_count: 0 });
    });

    it('applies a power level change to later @room mentions only after it', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await join(carol, room);
      let body = await sync(bob);
      const mention = { msgtype: 'm.text', body: '@room hi', 'm.mentions': { room: true } };
      assert.equal(
        (await carol.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/pl1`, mention)).status,
        200,
      );
      body = await syncSince(bob, body);
      // Carol (power 0) may not notify the room: an ordinary message count, no highlight.
      assert.deepEqual(counts(body, room), { notification_count: 1, highlight_count: 0 });
      const pl = await alice.get(`/_matrix/client/v3/rooms/${enc(room)}/state/m.room.power_levels/`);
      await putState(alice, room, 'm.room.power_levels', {
        ...pl.body,
        users: { ...(pl.body.users as Json), [carol.userId]: 50 },
      });
      assert.equal(
        (await carol.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/pl2`, mention)).status,
        200,
      );
      body = await syncSince(bob, body);
      assert.deepEqual(counts(body, room), { notification_count: 2, highlight_count: 1 });
    });
  });
}
