/**
 * Group commit (src/input/group-commit.ts): sends that arrive together are committed together, in fewer
 * transactions than events, across rooms; every send is answered only after its commit, each room keeps one linear
 * chain in arrival order per sender, a duplicate transaction id inside a burst gets the same event, and one event
 * refused (auth) or failing in the database does not fail the others of its group.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import { armFault } from '../../src/integrity/faults.js';
import type { Database } from '../../src/storage/schema.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Response, type TestServer } from '../helpers/server.js';
import { allMessages, createRoom, enc } from './util.js';

process.env.HEARTH_FAULT_INJECTION = '1';
type User = Client & { userId: string; deviceId: string };

const USERS = 8;
const PER_ROOM = 6;

function send(user: User, roomId: string, body: string, txnId = body): Promise<Response> {
  return user.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${enc(txnId)}`, {
    msgtype: 'm.text',
    body,
  });
}

/** Counts the transactions the server opens (each group commit is one). */
function countTransactions(db: Kysely<Database>): { readonly n: number } {
  const counter = { n: 0 };
  const original = db.transaction.bind(db);
  db.transaction = () => {
    counter.n++;
    return original();
  };
  return counter;
}

/** The room's events in stream order from the database: each one's prev_events must be exactly the one before. */
async function assertLinear(db: Kysely<Database>, roomId: string): Promise<void> {
  const rows = await db
    .selectFrom('events as e')
    .innerJoin('rooms as r', 'r.room_nid', 'e.room_nid')
    .select(['e.event_id', 'e.json'])
    .where('r.room_id', '=', roomId)
    .orderBy('e.stream_ordering')
    .execute();
  for (const [i, r] of rows.entries()) {
    const prev = (JSON.parse(r.json) as { prev_events: string[] }).prev_events;
    assert.deepEqual(prev, i === 0 ? [] : [rows[i - 1]?.event_id], `event ${i} follows the one before it`);
  }
  const ext = await db
    .selectFrom('forward_extremities as f')
    .innerJoin('rooms as r', 'r.room_nid', 'f.room_nid')
    .innerJoin('events as e', 'e.event_nid', 'f.event_nid')
    .select('e.event_id')
    .where('r.room_id', '=', roomId)
    .execute();
  assert.deepEqual(
    ext.map((e) => e.event_id),
    [rows[rows.length - 1]?.event_id],
  );
}

/** `roomId`'s messages per sender, in timeline order, as event ids and bodies. */
async function timeline(user: User, roomId: string): Promise<{ id: string; sender: string; body: string }[]> {
  return (await allMessages(user, roomId))
    .filter((e) => e.type === 'm.room.message')
    .map((e) => ({
      id: e.event_id as string,
      sender: e.sender as string,
      body: (e.content as { body: string }).body,
    }));
}

for (const engine of ENGINES) {
  describe(`${engine}: group commit of concurrent sends`, () => {
    let server: TestServer;
    let users: User[];
    let shared: string;
    let own: string[];
    before(async () => {
      server = await startTestServer(engine);
      users = await Promise.all(Array.from({ length: USERS }, (_, i) => server.user(`g${i}`)));
      shared = await createRoom(users[0] as User);
      for (const u of users.slice(1)) {
        const res = await u.post(`/_matrix/client/v3/rooms/${enc(shared)}/join`, {});
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      own = await Promise.all(users.map((u) => createRoom(u)));
    });
    after(() => server.close());

    it('commits bursts into one and many rooms in fewer transactions, every send answered in order', async () => {
      const tx = countTransactions(server.hs.storage.db);
      const acked = new Map<string, string>(); // body -> event id
      const loop = async (u: User, i: number, roomId: string, tag: string): Promise<void> => {
        for (let k = 0; k < PER_ROOM; k++) {
          const body = `${tag} ${i} ${k}`;
          const res = await send(u, roomId, body);
          assert.equal(res.status, 200, JSON.stringify(res.body));
          acked.set(body, res.body.event_id as string);
        }
      };
      await Promise.all(
        users.flatMap((u, i) => [loop(u, i, shared, 'shared'), loop(u, i, own[i] as string, 'own')]),
      );
      const sends = USERS * PER_ROOM * 2;
      assert.equal(acked.size, sends);
      assert.ok(tx.n < sends, `${sends} sends were committed in ${tx.n} transactions`);

      const sharedLine = await timeline(users[0] as User, shared);
      for (const [i, u] of users.entries()) {
        const mine = sharedLine.filter((e) => e.sender === u.userId);
        assert.deepEqual(
          mine.map((e) => e.body),
          Array.from({ length: PER_ROOM }, (_, k) => `shared ${i} ${k}`),
        );
        for (const e of mine) assert.equal(acked.get(e.body), e.id);
        const ownLine = await timeline(u, own[i] as string);
        assert.deepEqual(
          ownLine.map((e) => [e.body, e.id]),
          Array.from({ length: PER_ROOM }, (_, k) => [`own ${i} ${k}`, acked.get(`own ${i} ${k}`)]),
        );
      }
      await assertLinear(server.hs.storage.db, shared);
      for (const r of own) await assertLinear(server.hs.storage.db, r);
    });

    it('answers a transaction id repeated inside a burst with one event', async () => {
      const [a, ...others] = users as [User, ...User[]];
      const results = await Promise.all([
        ...Array.from({ length: 5 }, () => send(a, shared, 'once', 'dup-txn')),
        ...others.map((u, i) => send(u, shared, `beside ${i}`)),
      ]);
      for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
      const ids = new Set(results.slice(0, 5).map((r) => r.body.event_id));
      assert.equal(ids.size, 1, 'every retry of the transaction got the same event');
      const line = await timeline(a, shared);
      assert.deepEqual(
        line.filter((e) => e.body === 'once').map((e) => e.id),
        [...ids],
      );
      await assertLinear(server.hs.storage.db, shared);
    });

    it('refuses the one event that fails auth and commits the rest of its group', async () => {
      const [owner, weak, ...others] = users as [User, User, ...User[]];
      const results = await Promise.all([
        ...others.map((u, i) => send(u, shared, `around ${i}`)),
        weak.put(`/_matrix/client/v3/rooms/${enc(shared)}/state/m.room.name/`, { name: 'not allowed' }),
        owner.put(`/_matrix/client/v3/rooms/${enc(shared)}/state/m.room.topic/`, { topic: 'allowed' }),
        ...others.map((u, i) => send(u, shared, `after ${i}`)),
      ]);
      const refused = results[others.length] as Response;
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.equal(refused.body.errcode, 'M_FORBIDDEN');
      for (const r of results.filter((x) => x !== refused))
        assert.equal(r.status, 200, JSON.stringify(r.body));
      const events = await allMessages(owner, shared);
      assert.ok(!events.some((e) => e.type === 'm.room.name'), 'the refused event was not stored');
      assert.ok(events.some((e) => e.type === 'm.room.topic'));
      const bodies = new Set((await timeline(owner, shared)).map((e) => e.body));
      for (let i = 0; i < others.length; i++) {
        assert.ok(bodies.has(`around ${i}`) && bodies.has(`after ${i}`));
      }
      await assertLinear(server.hs.storage.db, shared);
    });

    it('fails only the event whose write fails and commits the others of its group', async () => {
      armFault('persist-event');
      const results = await Promise.all(users.map((u, i) => send(u, own[i] as string, `faulty burst ${i}`)));
      const failed = results.filter((r) => r.status !== 200);
      assert.equal(failed.length, 1, JSON.stringify(results.map((r) => r.status)));
      assert.equal(failed[0]?.status, 500);
      assert.equal(failed[0]?.body.errcode, 'M_UNKNOWN');
      for (const [i, u] of users.entries()) {
        const line = (await timeline(u, own[i] as string)).map((e) => e.body);
        const ok = (results[i] as Response).status === 200;
        assert.equal(
          line.includes(`faulty burst ${i}`),
          ok,
          `room ${i} holds its event iff it was acknowledged`,
        );
        await assertLinear(server.hs.storage.db, own[i] as string);
      }
      const retry = users.findIndex((_, i) => (results[i] as Response).status !== 200);
      const again = await send(users[retry] as User, own[retry] as string, `faulty burst ${retry}`);
      assert.equal(again.status, 200, JSON.stringify(again.body));
    });
  });
}
