/**
 * Many long-polls woken by one commit share the room's section (timeline, state, formatted events) but keep their
 * per-user parts: each gets the new event exactly once, only the sending device gets its transaction_id, and one
 * user's bundled aggregations never leak into another's response. A woken sync skips the per-user streams with
 * nothing new, and a since token from before a restart still gets what was written before the restart.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, mustJoin, sleep, sync, syncSince, type User } from './sync-util.js';

const SETTLE_MS = 200;
const LONG = 15_000;
const RECEIVERS = 20;

type Ev = Json & { event_id: string; unsigned?: Json };

const timelineOf = (body: Json, roomId: string): Ev[] => mustJoin(body, roomId).timeline.events as Ev[];

for (const engine of ENGINES) {
  describe(`${engine}: /sync fan-out`, () => {
    let server: TestServer;
    let alice: User;
    let aliceOther: User;
    let receivers: User[];
    let room: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('f_alice');
      aliceOther = Object.assign(server.client(), { userId: alice.userId, deviceId: '' });
      const login = await aliceOther.post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'f_alice' },
        password: 'correct horse battery staple',
      });
      aliceOther.token = login.body.access_token as string;
      aliceOther.deviceId = login.body.device_id as string;
      receivers = await Promise.all(Array.from({ length: RECEIVERS }, (_, i) => server.user(`f_r${i}`)));
      room = await createRoom(alice, { preset: 'public_chat' });
      for (const r of receivers) await join(r, room);
    });
    after(() => server.close());

    it('concurrent long-polls each get the new event once; only the sending device gets its transaction_id', async () => {
      const pollers = [alice, aliceOther, ...receivers];
      let tokens = await Promise.all(pollers.map((u) => sync(u, { timeout: 0, set_presence: 'offline' })));
      for (let round = 0; round < 3; round++) {
        const polls = pollers.map((u, i) =>
          syncSince(u, tokens[i] as Json, { timeout: LONG, set_presence: 'offline' }),
        );
        await sleep(SETTLE_MS);
        const txn = `fan${round}`;
        const sent = await alice.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/${txn}`, {
          msgtype: 'm.text',
          body: `round ${round}`,
        });
        assert.equal(sent.status, 200);
        const eventId = sent.body.event_id as string;
        tokens = await Promise.all(polls);
        for (const [i, body] of tokens.entries()) {
          const events = timelineOf(body, room);
          assert.deepEqual(
            events.map((e) => e.event_id),
            [eventId],
            `poller ${i}, round ${round}`,
          );
          const ev = events[0] as Ev;
          assert.equal(ev.content && (ev.content as Json).body, `round ${round}`);
          assert.equal(ev.unsigned?.transaction_id, i === 0 ? txn : undefined, `poller ${i} txn id`);
        }
        // The same event again from the new tokens: nothing (exactly once).
        const again = await Promise.all(
          pollers
            .slice(0, 4)
            .map((u, i) => syncSince(u, tokens[i] as Json, { timeout: 0, set_presence: 'offline' })),
        );
        for (const body of again) assert.equal((body.rooms as Json | undefined)?.join, undefined);
      }
    });

    it("one user's bundled aggregations and copies do not leak into another's response", async () => {
      const [bob, carol] = receivers as [User, User];
      const root = await alice.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/root`, {
        msgtype: 'm.text',
        body: 'thread root',
      });
      const rootId = root.body.event_id as string;
      const b0 = await sync(bob, { timeout: 0, set_presence: 'offline' });
      const c0 = await sync(carol, { timeout: 0, set_presence: 'offline' });
      const polls = [
        syncSince(bob, b0, { timeout: LONG, set_presence: 'offline' }),
        syncSince(carol, c0, { timeout: LONG, set_presence: 'offline' }),
      ];
      await sleep(SETTLE_MS);
      // Bob replies in the thread: the reply wakes both; its root is not in this timeline, the reply is.
      const reply = await bob.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/reply`, {
        msgtype: 'm.text',
        body: 'in thread',
        'm.relates_to': { rel_type: 'm.thread', event_id: rootId },
      });
      assert.equal(reply.status, 200);
      const [b1, c1] = (await Promise.all(polls)) as [Json, Json];
      const bobEv = timelineOf(b1, room)[0] as Ev;
      const carolEv = timelineOf(c1, room)[0] as Ev;
      assert.equal(bobEv.event_id, reply.body.event_id);
      assert.equal(carolEv.event_id, reply.body.event_id);
      assert.equal(bobEv.unsigned?.transaction_id, 'reply');
      assert.equal(carolEv.unsigned?.transaction_id, undefined);
      assert.notEqual(bobEv.unsigned, carolEv.unsigned);
    });

    it('a since token from before a restart still gets account data, to-device and receipts written before it', async () => {
      const [bob] = receivers as [User];
      const b0 = await sync(bob, { timeout: 0, set_presence: 'offline' });
      // A woken sync with nothing in the per-user streams answers the message alone.
      const put = await bob.put(`/_matrix/client/v3/user/${enc(bob.userId)}/account_data/m.fanout.test`, {
        n: 1,
      });
      assert.equal(put.status, 200);
      const td = await alice.put('/_matrix/client/v3/sendToDevice/m.fanout.ping/t1', {
        messages: { [bob.userId]: { [bob.deviceId]: { hello: 'bob' } } },
      });
      assert.equal(td.status, 200);
      const last = timelineOf(await sync(alice, { timeout: 0 }), room).at(-1) as Ev;
      const rcpt = await alice.post(
        `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(last.event_id)}`,
        {},
      );
      assert.equal(rcpt.status, 200);
      await server.stop();
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      for (const u of [alice, aliceOther, ...receivers]) u.baseUrl = server.url;
      const b1 = await syncSince(bob, b0, { timeout: 0 });
      const global = (b1.account_data as { events: Json[] }).events;
      assert.deepEqual(
        global.filter((e) => e.type === 'm.fanout.test').map((e) => e.content),
        [{ n: 1 }],
      );
      const toDevice = (b1.to_device as { events: Json[] }).events;
      assert.deepEqual(
        toDevice.map((e) => [e.type, e.content]),
        [['m.fanout.ping', { hello: 'bob' }]],
      );
      const ephemeral = mustJoin(b1, room).ephemeral?.events ?? [];
      const receipt = ephemeral.find((e) => e.type === 'm.receipt');
      assert.ok(receipt, JSON.stringify(ephemeral));
      assert.ok(JSON.stringify(receipt).includes(alice.userId));
      // Acknowledged by the next sync: delivered once.
      const b2 = await syncSince(bob, b1, { timeout: 0 });
      assert.deepEqual((b2.to_device as { events: Json[] }).events, []);
      assert.deepEqual((b2.account_data as { events: Json[] }).events, []);
    });
  });
}
