/**
 * Ephemeral data and account data in /sync over real HTTP: typing (start, stop, expiry), receipts (private ones
 * only for their owner), presence (only for users sharing a room; set_presence=offline), account data and tags.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import {
  assertSyncShape,
  createRoom,
  enc,
  join,
  joinedRoom,
  mustJoin,
  post,
  sync,
  syncSince,
  text,
  type User,
} from './sync-util.js';

const ephemeralOf = (body: Json, roomId: string, type: string): Json[] =>
  (joinedRoom(body, roomId)?.ephemeral?.events ?? []).filter((e) => e.type === type);

const presenceOf = (body: Json, userId: string): Json | undefined =>
  (((body.presence as Json | undefined)?.events as Json[] | undefined) ?? []).find(
    (e) => e.sender === userId,
  );

for (const engine of ENGINES) {
  describe(`${engine}: /sync ephemeral and account data`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let room: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('e_alice');
      bob = await server.user('e_bob');
      room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
    });
    after(() => server.close());

    const typing = (user: User, on: boolean, timeout?: number) =>
      user.put(`/_matrix/client/v3/rooms/${enc(room)}/typing/${enc(user.userId)}`, {
        typing: on,
        ...(timeout !== undefined ? { timeout } : {}),
      });

    it('typing arrives as m.typing in the room’s ephemeral, and so do stop and expiry', async () => {
      const a0 = await sync(alice);
      assert.equal((await typing(bob, true, 30_000)).status, 200);
      const a1 = await syncSince(alice, a0);
      assertSyncShape(a1);
      assert.deepEqual(ephemeralOf(a1, room, 'm.typing'), [
        { type: 'm.typing', content: { user_ids: [bob.userId] } },
      ]);
      // Unchanged typing is not repeated.
      const quiet = await syncSince(alice, a1);
      assert.deepEqual(ephemeralOf(quiet, room, 'm.typing'), []);
      assert.equal((await typing(bob, false)).status, 200);
      const a2 = await syncSince(alice, a1);
      assert.deepEqual(ephemeralOf(a2, room, 'm.typing'), [{ type: 'm.typing', content: { user_ids: [] } }]);

      // Expiry: a short timeout ends by itself, and wakes a long-poll with the empty list.
      assert.equal((await typing(bob, true, 300)).status, 200);
      const a3 = await syncSince(alice, a2);
      assert.deepEqual(ephemeralOf(a3, room, 'm.typing')[0]?.content, { user_ids: [bob.userId] });
      const started = Date.now();
      const a4 = await sync(alice, { since: a3.next_batch as string, timeout: 10_000 });
      assert.ok(Date.now() - started < 5_000, 'woken by the expiry');
      assert.deepEqual(ephemeralOf(a4, room, 'm.typing'), [{ type: 'm.typing', content: { user_ids: [] } }]);
    });

    it('receipts arrive as m.receipt; m.read.private only for its owner', async () => {
      const ev = await text(alice, room, 'read me');
      const a0 = await sync(alice);
      const b0 = await sync(bob);
      await post(bob, `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(ev)}`);
      const a1 = await syncSince(alice, a0);
      const receipt = ephemeralOf(a1, room, 'm.receipt')[0];
      const read = ((receipt?.content as Json | undefined)?.[ev] as Json | undefined)?.['m.read'] as
        Json | undefined;
      assert.equal(typeof (read?.[bob.userId] as Json | undefined)?.ts, 'number', JSON.stringify(receipt));

      const ev2 = await text(alice, room, 'read privately');
      const a2 = await sync(alice);
      const b2 = await syncSince(bob, b0);
      await post(bob, `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read.private/${enc(ev2)}`);
      const a3 = await syncSince(alice, a2);
      const seenByAlice = JSON.stringify(ephemeralOf(a3, room, 'm.receipt'));
      assert.ok(!seenByAlice.includes('m.read.private'), seenByAlice);
      const b3 = await syncSince(bob, b2);
      const own = ephemeralOf(b3, room, 'm.receipt')[0];
      const priv = ((own?.content as Json | undefined)?.[ev2] as Json | undefined)?.['m.read.private'] as
        Json | undefined;
      assert.ok(priv?.[bob.userId], JSON.stringify(own));
      // An initial sync shows current receipts with the same rule.
      const aInit = JSON.stringify(ephemeralOf(await sync(alice), room, 'm.receipt'));
      assert.ok(aInit.includes(ev) && !aInit.includes('m.read.private'), aInit);
      assert.ok(JSON.stringify(ephemeralOf(await sync(bob), room, 'm.receipt')).includes('m.read.private'));
    });

    it('presence is delivered for users sharing a room, not for strangers', async () => {
      const stranger = await server.user('e_stranger');
      const a0 = await sync(alice);
      const status = (u: User, presence: string, msg: string) =>
        u.put(`/_matrix/client/v3/presence/${enc(u.userId)}/status`, { presence, status_msg: msg });
      assert.equal((await status(bob, 'unavailable', 'brb')).status, 200);
      assert.equal((await status(stranger, 'online', 'secret')).status, 200);
      const a1 = await syncSince(alice, a0);
      assertSyncShape(a1);
      const p = presenceOf(a1, bob.userId);
      assert.equal((p?.content as Json | undefined)?.presence, 'unavailable');
      assert.equal((p?.content as Json | undefined)?.status_msg, 'brb');
      assert.equal(p?.type, 'm.presence');
      assert.equal(presenceOf(a1, stranger.userId), undefined);
      assert.equal(presenceOf(await sync(alice), stranger.userId), undefined, 'nor in an initial sync');
      assert.ok(presenceOf(await sync(stranger), stranger.userId), 'a user sees their own presence');
    });

    it('set_presence=offline does not mark the user online', async () => {
      const shy = await server.user('e_shy');
      const get = async (): Promise<string | undefined> => {
        const res = await shy.get(`/_matrix/client/v3/presence/${enc(shy.userId)}/status`);
        return res.status === 200 ? (res.body.presence as string) : undefined;
      };
      const first = await sync(shy, { set_presence: 'offline' });
      assert.notEqual(await get(), 'online');
      assert.equal(presenceOf(first, shy.userId), undefined, 'no presence of its own to report');
      await sync(shy, { set_presence: 'unavailable' });
      assert.equal(await get(), 'unavailable');
      await sync(shy);
      assert.equal(await get(), 'online');
    });

    it('global and room account data arrive incrementally, once', async () => {
      const a0 = await sync(alice);
      const base = `/_matrix/client/v3/user/${enc(alice.userId)}`;
      assert.equal((await alice.put(`${base}/account_data/org.example.global`, { v: 1 })).status, 200);
      assert.equal(
        (await alice.put(`${base}/rooms/${enc(room)}/account_data/org.example.room`, { v: 2 })).status,
        200,
      );
      const a1 = await syncSince(alice, a0);
      assertSyncShape(a1);
      assert.deepEqual((a1.account_data as Json).events, [{ type: 'org.example.global', content: { v: 1 } }]);
      assert.deepEqual(mustJoin(a1, room).account_data?.events, [
        { type: 'org.example.room', content: { v: 2 } },
      ]);
      const a2 = await syncSince(alice, a1);
      assert.deepEqual((a2.account_data as Json).events, []);
      assert.equal(joinedRoom(a2, room), undefined);
      // An update arrives with its new content.
      assert.equal((await alice.put(`${base}/account_data/org.example.global`, { v: 3 })).status, 200);
      const a3 = await syncSince(alice, a2);
      assert.deepEqual((a3.account_data as Json).events, [{ type: 'org.example.global', content: { v: 3 } }]);
    });

    it('tags arrive as m.tag room account data', async () => {
      const a0 = await sync(alice);
      const tag = `/_matrix/client/v3/user/${enc(alice.userId)}/rooms/${enc(room)}/tags`;
      assert.equal((await alice.put(`${tag}/u.work`, { order: 0.5 })).status, 200);
      const a1 = await syncSince(alice, a0);
      const tags = mustJoin(a1, room).account_data?.events.filter((e) => e.type === 'm.tag');
      assert.deepEqual(tags, [{ type: 'm.tag', content: { tags: { 'u.work': { order: 0.5 } } } }]);
      assert.equal((await alice.delete(`${tag}/u.work`)).status, 200);
      const a2 = await syncSince(alice, a1);
      assert.deepEqual(
        mustJoin(a2, room).account_data?.events.filter((e) => e.type === 'm.tag'),
        [{ type: 'm.tag', content: { tags: {} } }],
      );
    });
  });
}
