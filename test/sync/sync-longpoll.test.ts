/**
 * Long-polling /sync over real HTTP: what wakes a waiting request and what must not, many concurrent waiters;
 * and sync tokens: across a restart, malformed, from the future.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import {
  assertSyncShape,
  bodies,
  createRoom,
  enc,
  join,
  joinedRoom,
  mustJoin,
  post,
  roomsOf,
  sleep,
  sync,
  syncRaw,
  syncSince,
  text,
  type User,
} from './sync-util.js';

/** Long enough for a long-poll to have computed its empty answer and started waiting. */
const SETTLE_MS = 150;
const LONG = 15_000;

/**
 * Starts a long-poll from `since`, runs `trigger` once it waits, and returns the response and how long it took.
 * Presence is left alone (`set_presence=offline`) so that only the trigger can wake it.
 */
async function wakeBy(
  user: User,
  since: Json,
  trigger: () => Promise<unknown>,
): Promise<{ body: Json; ms: number }> {
  const started = Date.now();
  const poll = sync(user, { since: since.next_batch as string, timeout: LONG, set_presence: 'offline' });
  await sleep(SETTLE_MS);
  await trigger();
  const body = await poll;
  return { body, ms: Date.now() - started };
}

for (const engine of ENGINES) {
  describe(`${engine}: /sync long-poll`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let room: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('l_alice');
      bob = await server.user('l_bob');
      room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      // Both are online from here on, so later syncs write no presence.
      await sync(alice);
      await sync(bob);
    });
    after(() => server.close());

    const fresh = (u: User): Promise<Json> => sync(u, { set_presence: 'offline' });

    it('is woken by a message in a joined room', async () => {
      const { body, ms } = await wakeBy(alice, await fresh(alice), () => text(bob, room, 'wake'));
      assert.ok(ms < LONG / 2, `answered after ${ms} ms`);
      assert.deepEqual(bodies(mustJoin(body, room).timeline.events), ['wake']);
    });

    it('is woken by an invite to the user', async () => {
      const carol = await server.user('l_carol');
      let invited = '';
      const { body, ms } = await wakeBy(carol, await fresh(carol), async () => {
        invited = await createRoom(alice, { invite: [carol.userId] });
      });
      assert.ok(ms < LONG / 2, `answered after ${ms} ms`);
      assert.ok(roomsOf(body, 'invite')[invited], JSON.stringify(body.rooms));
    });

    it('is woken by typing', async () => {
      const { body, ms } = await wakeBy(alice, await fresh(alice), () =>
        bob.put(`/_matrix/client/v3/rooms/${enc(room)}/typing/${enc(bob.userId)}`, {
          typing: true,
          timeout: 5000,
        }),
      );
      assert.ok(ms < LONG / 2, `answered after ${ms} ms`);
      const ev = mustJoin(body, room).ephemeral?.events.find((e) => e.type === 'm.typing');
      assert.deepEqual(ev?.content, { user_ids: [bob.userId] });
      await bob.put(`/_matrix/client/v3/rooms/${enc(room)}/typing/${enc(bob.userId)}`, { typing: false });
    });

    it('is woken by a receipt', async () => {
      const ev = await text(alice, room, 'to be read');
      const { body, ms } = await wakeBy(alice, await fresh(alice), () =>
        post(bob, `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(ev)}`),
      );
      assert.ok(ms < LONG / 2, `answered after ${ms} ms`);
      const receipt = mustJoin(body, room).ephemeral?.events.find((e) => e.type === 'm.receipt');
      assert.ok(JSON.stringify(receipt?.content).includes(bob.userId), JSON.stringify(receipt));
    });

    it('is woken by account data', async () => {
      const { body, ms } = await wakeBy(alice, await fresh(alice), () =>
        alice.put(`/_matrix/client/v3/user/${enc(alice.userId)}/account_data/org.example.wake`, { x: 1 }),
      );
      assert.ok(ms < LONG / 2, `answered after ${ms} ms`);
      assert.deepEqual((body.account_data as Json).events, [{ type: 'org.example.wake', content: { x: 1 } }]);
    });

    it('is woken by the presence of a user sharing a room', async () => {
      const { body, ms } = await wakeBy(alice, await fresh(alice), () =>
        bob.put(`/_matrix/client/v3/presence/${enc(bob.userId)}/status`, {
          presence: 'unavailable',
          status_msg: 'away',
        }),
      );
      assert.ok(ms < LONG / 2, `answered after ${ms} ms`);
      const p = ((body.presence as Json).events as Json[]).find((e) => e.sender === bob.userId);
      assert.equal((p?.content as Json | undefined)?.presence, 'unavailable');
    });

    it('is not woken by a message in a room the user is not in: it times out empty', async () => {
      const other = await createRoom(bob, { preset: 'public_chat' });
      const since = await fresh(alice);
      const started = Date.now();
      const poll = sync(alice, { since: since.next_batch as string, timeout: 500, set_presence: 'offline' });
      await sleep(SETTLE_MS);
      await text(bob, other, 'not for alice');
      const body = await poll;
      const ms = Date.now() - started;
      assert.ok(ms >= 450, `returned after ${ms} ms, before the timeout`);
      assertSyncShape(body);
      assert.deepEqual(body.rooms, {});
      assert.notEqual(body.next_batch, undefined);
    });

    it('50 concurrent idle long-polls all time out, then all wake on one message in their shared room', async () => {
      const shared = await createRoom(alice, { preset: 'public_chat' });
      const users: User[] = [];
      for (let i = 0; i < 25; i++) {
        const u = await server.user(`l_many${i}`);
        await join(u, shared);
        users.push(u);
      }
      // Two long-polls per user: 50 in all.
      const pollers = [...users, ...users];
      const tokens = await Promise.all(pollers.map((u) => fresh(u)));

      const t0 = Date.now();
      const idle = await Promise.all(
        pollers.map((u, i) =>
          sync(u, { since: tokens[i]?.next_batch as string, timeout: 400, set_presence: 'offline' }).then(
            (body) => ({ body, ms: Date.now() - t0 }),
          ),
        ),
      );
      for (const { body, ms } of idle) {
        assert.ok(ms >= 350, `timed out after ${ms} ms`);
        assert.deepEqual(body.rooms, {});
        assert.equal(typeof body.next_batch, 'string');
      }

      const t1 = Date.now();
      const polls = pollers.map((u, i) =>
        sync(u, { since: idle[i]?.body.next_batch as string, timeout: LONG, set_presence: 'offline' }),
      );
      await sleep(SETTLE_MS * 2);
      await text(alice, shared, 'everyone up');
      const woken = await Promise.all(polls);
      assert.ok(Date.now() - t1 < LONG / 2, 'all answered long before the timeout');
      for (const body of woken)
        assert.deepEqual(bodies(mustJoin(body, shared).timeline.events), ['everyone up']);
    });
  });

  describe(`${engine}: /sync tokens`, () => {
    let server: TestServer;
    after(() => server.close());

    before(async () => {
      server = await startTestServer(engine);
    });

    it('next_batch survives a server restart', async () => {
      const alice = await server.user('k_alice');
      const bob = await server.user('k_bob');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await text(alice, room, 'before the token');
      const b0 = await sync(bob);
      await text(alice, room, 'after the token, before the restart');
      await server.stop();
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
      await text(alice, room, 'after the restart');
      const b1 = await syncSince(bob, b0);
      assertSyncShape(b1);
      assert.deepEqual(bodies(mustJoin(b1, room).timeline.events), [
        'after the token, before the restart',
        'after the restart',
      ]);
      // The new token keeps working, and a long-poll on it is woken as before.
      const started = Date.now();
      const poll = sync(bob, { since: b1.next_batch as string, timeout: LONG });
      await sleep(SETTLE_MS);
      await text(alice, room, 'wake after restart');
      const b2 = await poll;
      assert.ok(Date.now() - started < LONG / 2);
      assert.deepEqual(bodies(mustJoin(b2, room).timeline.events), ['wake after restart']);
    });

    it('a malformed since is 400 M_INVALID_PARAM; a token from the future is 200', async () => {
      const eve = await server.user('k_eve');
      for (const since of ['garbage', 's', 'S12', 's12_x', 's-1', '12', 's1.5']) {
        const res = await syncRaw(eve, { since });
        assert.equal(res.status, 400, `${since}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, 'M_INVALID_PARAM', since);
      }
      const room = await createRoom(eve, {});
      const future = await syncRaw(eve, { since: 's999999999_999', timeout: 0 });
      assert.equal(future.status, 200, JSON.stringify(future.body));
      assertSyncShape(future.body);
      // The token it hands back is a usable, current one.
      await text(eve, room, 'after the future');
      const next = await syncSince(eve, future.body);
      assert.deepEqual(bodies(joinedRoom(next, room)?.timeline.events ?? []), ['after the future']);
      const bad = await syncRaw(eve, { since: 's1', timeout: 'soon' });
      assert.equal(bad.status, 400);
    });
  });
}
