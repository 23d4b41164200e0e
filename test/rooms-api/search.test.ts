import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string };

interface Result {
  rank: number;
  result: { event_id: string; room_id: string; sender: string; type: string; content: Json };
  context?: Json;
}

interface RoomEvents {
  count: number;
  highlights: string[];
  results: Result[];
  next_batch?: string;
  state?: Record<string, Json[]>;
  groups?: Record<string, Record<string, { results: string[]; order: number; next_batch?: string }>>;
}

const SEARCH = '/_matrix/client/v3/search';

async function search(user: Client, criteria: Json, nextBatch?: string): Promise<RoomEvents> {
  const path = nextBatch === undefined ? SEARCH : `${SEARCH}?next_batch=${encodeURIComponent(nextBatch)}`;
  const res = await user.post(path, { search_categories: { room_events: criteria } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const cats = res.body.search_categories as { room_events: RoomEvents };
  return cats.room_events;
}

async function createRoom(user: User, body: Json = {}): Promise<string> {
  const res = await user.post('/_matrix/client/v3/createRoom', { preset: 'public_chat', ...body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

let txn = 0;
async function say(user: User, roomId: string, body: string): Promise<string> {
  const res = await user.put(
    `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${++txn}`,
    { msgtype: 'm.text', body },
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function join(user: User, roomId: string): Promise<void> {
  const res = await user.post(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, {});
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

const ids = (r: RoomEvents) => r.results.map((x) => x.result.event_id);

for (const engine of ENGINES) {
  describe(`${engine}: server-side search`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    let roomA: string;
    let roomB: string;
    let secret: string;
    const ev: Record<string, string> = {};

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      carol = await server.user('carol');
      roomA = await createRoom(alice, { name: 'Orchard planning', topic: 'Where the kiwi trees go' });
      roomB = await createRoom(alice);
      await join(bob, roomA);
      await join(bob, roomB);
      // Sent in this order so that recent ordering (newest first) differs from rank ordering.
      ev.strong = await say(alice, roomA, 'kiwi kiwi kiwi kiwi');
      ev.weak = await say(bob, roomA, 'a kiwi is one fruit among many other fruits that people grow and eat');
      ev.inB = await say(alice, roomB, 'kiwi smoothie recipe');
      ev.other = await say(alice, roomA, 'nothing to see here');
      // Carol's own room: nobody else is in it.
      secret = await createRoom(carol, { preset: 'private_chat' });
      ev.secret = await say(carol, secret, 'kiwi secret stash');
    });
    after(() => server.close());

    it('orders by rank by default and by recency on request, with count and highlights', async () => {
      const ranked = await search(bob, { search_term: 'kiwi', keys: ['content.body'] });
      assert.deepEqual(new Set(ids(ranked)), new Set([ev.strong, ev.weak, ev.inB]));
      assert.equal(ranked.count, 3);
      assert.ok(ranked.highlights.includes('kiwi'), JSON.stringify(ranked.highlights));
      assert.equal(ranked.results[0]?.result.event_id, ev.strong, 'the densest match ranks first');
      const ranks = ranked.results.map((r) => r.rank);
      assert.deepEqual(
        ranks,
        [...ranks].sort((a, b) => b - a),
        'rank is descending',
      );
      assert.ok(ranks.every((r) => typeof r === 'number' && Number.isFinite(r)));
      assert.equal(ranked.next_batch, undefined);

      const recent = await search(bob, { search_term: 'kiwi', keys: ['content.body'], order_by: 'recent' });
      assert.deepEqual(ids(recent), [ev.inB, ev.weak, ev.strong]);
      const first = recent.results[0]?.result;
      assert.equal(first?.room_id, roomB);
      assert.equal(first?.type, 'm.room.message');
      assert.equal(first?.content.body, 'kiwi smoothie recipe');
    });

    it('matches word prefixes and stems, and highlights the words that matched', async () => {
      const res = await search(bob, { search_term: 'fruit', keys: ['content.body'] });
      assert.deepEqual(ids(res), [ev.weak]);
      assert.ok(res.highlights.includes('fruit'));
      assert.ok(res.highlights.includes('fruits'), JSON.stringify(res.highlights));
      const prefix = await search(bob, { search_term: 'smooth', keys: ['content.body'] });
      assert.deepEqual(ids(prefix), [ev.inB]);
    });

    it('searches room names and topics, and honours keys', async () => {
      const named = await search(bob, { search_term: 'orchard' });
      assert.equal(named.results.length, 1);
      assert.equal(named.results[0]?.result.type, 'm.room.name');
      const topic = await search(bob, { search_term: 'kiwi', keys: ['content.topic'] });
      assert.deepEqual(
        topic.results.map((r) => r.result.type),
        ['m.room.topic'],
      );
      const all = await search(bob, { search_term: 'kiwi' });
      assert.equal(all.count, 4, 'messages and the topic');
    });

    it('pages with next_batch in both orderings', async () => {
      for (const order_by of ['recent', 'rank']) {
        const criteria = { search_term: 'kiwi', keys: ['content.body'], order_by, filter: { limit: 2 } };
        const page1 = await search(bob, criteria);
        assert.equal(page1.results.length, 2);
        assert.equal(page1.count, 3);
        assert.ok(page1.next_batch, `${order_by}: a second page is announced`);
        const page2 = await search(bob, criteria, page1.next_batch);
        assert.equal(page2.results.length, 1);
        assert.equal(page2.next_batch, undefined);
        assert.deepEqual(new Set([...ids(page1), ...ids(page2)]), new Set([ev.strong, ev.weak, ev.inB]));
        if (order_by === 'recent')
          assert.deepEqual([...ids(page1), ...ids(page2)], [ev.inB, ev.weak, ev.strong]);
      }
    });

    it('rejects a malformed next_batch with M_INVALID_PARAM', async () => {
      for (const token of ['', 'not a token', 'eyJvIjoicmFuayJ9', 'AAAA']) {
        const res = await bob.post(`${SEARCH}?next_batch=${encodeURIComponent(token)}`, {
          search_categories: { room_events: { search_term: 'kiwi' } },
        });
        assert.equal(res.status, 400, `${JSON.stringify(token)}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, 'M_INVALID_PARAM');
      }
      const recent = await search(bob, { search_term: 'kiwi', order_by: 'recent', filter: { limit: 1 } });
      const res = await bob.post(`${SEARCH}?next_batch=${encodeURIComponent(recent.next_batch as string)}`, {
        search_categories: { room_events: { search_term: 'kiwi', order_by: 'rank' } },
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_INVALID_PARAM');
    });

    it('filters by room and sender', async () => {
      const onlyB = await search(bob, { search_term: 'kiwi', filter: { rooms: [roomB] } });
      assert.deepEqual(ids(onlyB), [ev.inB]);
      const notB = await search(bob, {
        search_term: 'kiwi',
        keys: ['content.body'],
        filter: { not_rooms: [roomB] },
      });
      assert.deepEqual(new Set(ids(notB)), new Set([ev.strong, ev.weak]));
      const byBob = await search(alice, { search_term: 'kiwi', filter: { senders: [bob.userId] } });
      assert.deepEqual(ids(byBob), [ev.weak]);
      const notAlice = await search(alice, { search_term: 'kiwi', filter: { not_senders: [alice.userId] } });
      assert.deepEqual(ids(notAlice), [ev.weak]);
      const types = await search(alice, { search_term: 'kiwi', filter: { types: ['m.room.t*'] } });
      assert.deepEqual(
        types.results.map((r) => r.result.type),
        ['m.room.topic'],
      );
    });

    it('does not find messages of rooms the user is not in', async () => {
      const bobs = await search(bob, { search_term: 'secret' });
      assert.equal(bobs.results.length, 0);
      assert.equal(bobs.count, 0);
      const named = await search(bob, { search_term: 'kiwi', filter: { rooms: [secret] } });
      assert.equal(named.results.length, 0);
      const carols = await search(carol, { search_term: 'kiwi' });
      assert.deepEqual(ids(carols), [ev.secret]);
    });

    it('applies history visibility: joined-only history before the join stays hidden', async () => {
      const dave = await server.user('dave');
      const room = await createRoom(alice, {
        initial_state: [
          { type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } },
        ],
      });
      const early = await say(alice, room, 'papaya before dave');
      await join(dave, room);
      const late = await say(alice, room, 'papaya after dave');
      const res = await search(dave, { search_term: 'papaya' });
      assert.deepEqual(ids(res), [late]);
      const alices = await search(alice, { search_term: 'papaya', order_by: 'recent' });
      assert.deepEqual(ids(alices), [late, early]);
      // After leaving, what came later is not searchable.
      const left = await dave.post(`/_matrix/client/v3/rooms/${encodeURIComponent(room)}/leave`, {});
      assert.equal(left.status, 200);
      await say(alice, room, 'papaya once dave left');
      const after = await search(dave, { search_term: 'papaya' });
      assert.deepEqual(ids(after), [late]);
    });

    it('drops a redacted message from the results', async () => {
      const room = await createRoom(alice);
      const target = await say(alice, room, 'mango to be redacted');
      const kept = await say(alice, room, 'mango that stays');
      assert.equal((await search(alice, { search_term: 'mango' })).count, 2);
      const red = await alice.put(
        `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/redact/${encodeURIComponent(target)}/r1`,
        {},
      );
      assert.equal(red.status, 200, JSON.stringify(red.body));
      const res = await search(alice, { search_term: 'mango' });
      assert.deepEqual(ids(res), [kept]);
      assert.equal(res.count, 1);
    });

    it('never fails on query syntax characters', async () => {
      const terms = [
        '"foo',
        'AND OR (',
        'kiwi AND',
        'NOT kiwi',
        '-kiwi',
        'kiwi*',
        '*',
        ':*',
        "'; DROP TABLE events; --",
        'a & b | !c <-> d',
        '(((',
        '"',
        '""',
        'or',
        '^kiwi',
        'NEAR(kiwi smoothie)',
        'body:kiwi',
        '{kiwi}',
        '\u0301\u0301',
        '🥝 kiwi',
        '',
        '   ',
      ];
      for (const search_term of terms) {
        for (const order_by of ['rank', 'recent']) {
          const res = await bob.post(SEARCH, {
            search_categories: { room_events: { search_term, order_by } },
          });
          assert.equal(res.status, 200, `${JSON.stringify(search_term)}: ${JSON.stringify(res.body)}`);
        }
      }
      // U+0000 cannot be stored or searched by PostgreSQL: the HTTP layer refuses it in every body.
      const nul = await bob.post(SEARCH, {
        search_categories: { room_events: { search_term: 'kiwi\u0000' } },
      });
      assert.equal(nul.status, 400);
      assert.equal(nul.body.errcode, 'M_BAD_JSON');
      const neg = await search(bob, { search_term: 'kiwi -smoothie', keys: ['content.body'] });
      assert.deepEqual(new Set(ids(neg)), new Set([ev.strong, ev.weak]));
      const or = await search(bob, { search_term: 'smoothie or fruits', keys: ['content.body'] });
      assert.deepEqual(new Set(ids(or)), new Set([ev.inB, ev.weak]));
      const phrase = await search(bob, { search_term: '"smoothie recipe"' });
      assert.deepEqual(ids(phrase), [ev.inB]);
      const quoted = await search(bob, { search_term: '"kiwi', keys: ['content.body'] });
      assert.equal(quoted.count, 3);
    });

    it('answers M_MISSING_PARAM without a search_term and rejects bad criteria', async () => {
      const missing = await bob.post(SEARCH, { search_categories: { room_events: {} } });
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
      const noCategories = await bob.post(SEARCH, {});
      assert.equal(noCategories.status, 400);
      assert.equal(noCategories.body.errcode, 'M_MISSING_PARAM');
      const badKey = await bob.post(SEARCH, {
        search_categories: { room_events: { search_term: 'x', keys: ['content.nope'] } },
      });
      assert.equal(badKey.status, 400);
      const badOrder = await bob.post(SEARCH, {
        search_categories: { room_events: { search_term: 'x', order_by: 'random' } },
      });
      assert.equal(badOrder.status, 400);
      const anon = await server
        .client()
        .post(SEARCH, { search_categories: { room_events: { search_term: 'x' } } });
      assert.equal(anon.status, 401);
    });

    it('returns event context, profiles, room state and groups on request', async () => {
      const res = await search(bob, {
        search_term: 'smoothie',
        event_context: { before_limit: 2, after_limit: 2, include_profile: true },
        include_state: true,
        groupings: { group_by: [{ key: 'room_id' }, { key: 'sender' }] },
      });
      assert.equal(res.results.length, 1);
      const ctx = res.results[0]?.context as {
        events_before: { event_id: string }[];
        events_after: unknown[];
        start: string;
        end: string;
        profile_info: Record<string, Json>;
      };
      assert.ok(ctx, 'context present');
      assert.equal(ctx.events_before.length, 2);
      assert.ok(Array.isArray(ctx.events_after));
      assert.equal(typeof ctx.start, 'string');
      assert.equal(typeof ctx.end, 'string');
      assert.ok(ctx.profile_info[alice.userId], JSON.stringify(ctx.profile_info));
      const state = res.state?.[roomB];
      assert.ok(
        state?.some((e) => e.type === 'm.room.create'),
        'room state included',
      );
      assert.deepEqual(res.groups?.room_id?.[roomB]?.results, [ev.inB]);
      assert.equal(res.groups?.room_id?.[roomB]?.order, 1);
      assert.deepEqual(res.groups?.sender?.[alice.userId]?.results, [ev.inB]);
    });

    it('continues inside a group with its next_batch', async () => {
      const criteria = {
        search_term: 'kiwi',
        keys: ['content.body'],
        order_by: 'recent',
        filter: { limit: 2 },
        groupings: { group_by: [{ key: 'room_id' }] },
      };
      const page1 = await search(bob, criteria);
      assert.deepEqual(ids(page1), [ev.inB, ev.weak]);
      const token = page1.groups?.room_id?.[roomA]?.next_batch;
      assert.ok(token, JSON.stringify(page1.groups));
      const inA = await search(bob, criteria, token);
      assert.deepEqual(ids(inA), [ev.strong]);
    });
  });
}
