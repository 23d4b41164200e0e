/**
 * Transaction ids make PUT /send idempotent per device: a retry returns the first event and stores nothing new,
 * also when retried concurrently and after a server restart (the mapping lives in the database); another device
 * using the same transaction id sends its own event.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const PASSWORD = 'correct horse battery staple';

function rid(roomId: string): string {
  return encodeURIComponent(roomId);
}

/** Logs `localpart` in over HTTP, with a given device id or a new one. */
async function login(
  server: TestServer,
  localpart: string,
  deviceId?: string,
): Promise<Client & { userId: string; deviceId: string }> {
  const c = server.client();
  const res = await c.post('/_matrix/client/v3/login', {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user: localpart },
    password: PASSWORD,
    ...(deviceId !== undefined ? { device_id: deviceId } : {}),
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  if (deviceId !== undefined)
    assert.equal(res.body.device_id, deviceId, 'the same device is logged in again');
  c.token = res.body.access_token as string;
  return Object.assign(c, { userId: res.body.user_id as string, deviceId: res.body.device_id as string });
}

async function send(c: Client, roomId: string, txnId: string, body: string): Promise<string> {
  const res = await c.put(`/_matrix/client/v3/rooms/${rid(roomId)}/send/m.room.message/${txnId}`, {
    msgtype: 'm.text',
    body,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.match(res.body.event_id as string, /^\$/);
  return res.body.event_id as string;
}

/** The number of stored events of `type` in the room (rows, not what an API returns). */
async function countEvents(server: TestServer, roomId: string, type = 'm.room.message'): Promise<number> {
  const row = await server.hs.storage.db
    .selectFrom('events as e')
    .innerJoin('rooms as r', 'r.room_nid', 'e.room_nid')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('r.room_id', '=', roomId)
    .where('e.type', '=', type)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

for (const engine of ENGINES) {
  describe(`${engine}: transaction id idempotency`, () => {
    // The server in use; replaced by a restarted one in the restart test.
    let server: TestServer | undefined;
    after(() => server?.close());

    it('returns the same event for the same transaction id, and a new one for another device', async () => {
      server = await startTestServer(engine);
      const alice = await server.user('alice', { password: PASSWORD });
      const created = await alice.post('/_matrix/client/v3/createRoom', {});
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const roomId = created.body.room_id as string;

      const first = await send(alice, roomId, 'txn1', 'hello');
      const retry = await send(alice, roomId, 'txn1', 'hello');
      assert.equal(retry, first, 'a retry returns the first event');
      // The content of a retry does not matter: the transaction id identifies the request.
      assert.equal(await send(alice, roomId, 'txn1', 'hello, edited'), first);
      assert.equal(await countEvents(server, roomId), 1, 'one event stored');

      // Retries racing each other (a client that timed out and retried twice) still store one event.
      const racing = await Promise.all(Array.from({ length: 8 }, () => send(alice, roomId, 'txn2', 'race')));
      assert.equal(new Set(racing).size, 1, 'all racing retries get the same event');
      assert.notEqual(racing[0], first);
      assert.equal(await countEvents(server, roomId), 2);

      const phone = await login(server, 'alice');
      assert.notEqual(phone.deviceId, alice.deviceId);
      const fromPhone = await send(phone, roomId, 'txn1', 'hello');
      assert.notEqual(fromPhone, first, 'another device with the same transaction id sends a new event');
      assert.equal(await send(phone, roomId, 'txn1', 'hello'), fromPhone, 'and its retry is idempotent too');
      assert.equal(await countEvents(server, roomId), 3);

      // Redactions are idempotent by transaction id as well.
      const redact = `/_matrix/client/v3/rooms/${rid(roomId)}/redact/${encodeURIComponent(fromPhone)}/r1`;
      const r1 = await phone.put(redact, { reason: 'oops' });
      assert.equal(r1.status, 200, JSON.stringify(r1.body));
      const r2 = await phone.put(redact, { reason: 'oops' });
      assert.equal(r2.body.event_id, r1.body.event_id, 'a retried redaction returns the first one');
      assert.equal(await countEvents(server, roomId, 'm.room.redaction'), 1);
    });

    it('scopes transaction ids to the room: the same txnId in two rooms sends two events', async () => {
      const u = await (server as TestServer).user('txnscope');
      const r1 = (await u.post('/_matrix/client/v3/createRoom', {})).body.room_id as string;
      const r2 = (await u.post('/_matrix/client/v3/createRoom', {})).body.room_id as string;
      const [a, b] = await Promise.all([send(u, r1, 'same', 'one'), send(u, r2, 'same', 'two')]);
      assert.notEqual(a, b);
      const again = await send(u, r2, 'same', 'two');
      assert.equal(again, b);
      const s = await u.get(`/_matrix/client/v3/rooms/${rid(r2)}/messages?dir=b&limit=5`);
      const chunk = s.body.chunk as { event_id: string; unsigned?: { transaction_id?: string } }[];
      const mine = chunk.find((e) => e.event_id === b);
      assert.equal(mine?.unsigned?.transaction_id, 'same', 'the client sees its own txnId back');
    });

    it('returns the same event for a retry after a server restart, without storing a second one', async () => {
      const before = server ?? (await startTestServer(engine));
      server = before;
      const bob = await before.user('bob', { password: PASSWORD });
      const created = await bob.post('/_matrix/client/v3/createRoom', {});
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const roomId = created.body.room_id as string;
      const first = await send(bob, roomId, 'persisted-txn', 'before the restart');
      assert.equal(await countEvents(before, roomId), 1);

      await before.stop();
      const restarted = await startTestServer(engine, {}, { db: before.db, dataDir: before.dataDir });
      server = restarted;

      // The same device logs in again (its old access token is replaced) and retries.
      const again = await login(restarted, 'bob', bob.deviceId);
      const retry = await send(again, roomId, 'persisted-txn', 'before the restart');
      assert.equal(retry, first, 'the retry after the restart returns the first event');
      const racing = await Promise.all(
        Array.from({ length: 5 }, () => send(again, roomId, 'persisted-txn', 'before the restart')),
      );
      assert.deepEqual(new Set(racing), new Set([first]));
      assert.equal(await countEvents(restarted, roomId), 1, 'no second event was stored');

      // A new transaction id after the restart is a new event, chained after the first.
      const next = await send(again, roomId, 'next-txn', 'after the restart');
      assert.notEqual(next, first);
      assert.equal(await countEvents(restarted, roomId), 2);
      const row = await restarted.hs.storage.db
        .selectFrom('events')
        .select('json')
        .where('event_id', '=', next)
        .executeTakeFirstOrThrow();
      assert.deepEqual((JSON.parse(row.json) as { prev_events: string[] }).prev_events, [first]);
    });
  });
}
