/**
 * Concurrent writers through the HTTP API: many clients sending at once into one room must produce one linear
 * chain (every event's prev_events is exactly the event before it, one forward extremity), with every message
 * stored once and read back in the same order by every reader; rooms written in parallel each keep their own chain.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string; deviceId: string };

interface TimelineEvent {
  event_id: string;
  type: string;
  sender: string;
  content: Json;
}

interface StoredEvent {
  eventId: string;
  type: string;
  sender: string;
  depth: number;
  streamOrdering: number;
  prevEvents: string[];
  edges: string[];
  body: unknown;
}

const USERS = 20;
const PER_USER = 25;

function rid(roomId: string): string {
  return encodeURIComponent(roomId);
}

/** The room's events from the database, in stream order, with prev_events from the JSON and from event_edges. */
async function storedEvents(server: TestServer, roomId: string): Promise<StoredEvent[]> {
  const db = server.hs.storage.db;
  const rows = await db
    .selectFrom('events as e')
    .innerJoin('rooms as r', 'r.room_nid', 'e.room_nid')
    .select(['e.event_nid', 'e.event_id', 'e.type', 'e.sender', 'e.depth', 'e.stream_ordering', 'e.json'])
    .where('r.room_id', '=', roomId)
    .orderBy('e.stream_ordering')
    .execute();
  const nids = rows.map((r) => Number(r.event_nid));
  const edges = nids.length
    ? await db
        .selectFrom('event_edges')
        .select(['event_nid', 'prev_event_id'])
        .where('event_nid', 'in', nids)
        .execute()
    : [];
  const edgesByNid = new Map<number, string[]>();
  for (const e of edges) {
    const list = edgesByNid.get(Number(e.event_nid)) ?? [];
    list.push(e.prev_event_id);
    edgesByNid.set(Number(e.event_nid), list);
  }
  return rows.map((r) => {
    const pdu = JSON.parse(r.json) as { prev_events: string[]; content: Json };
    return {
      eventId: r.event_id,
      type: r.type,
      sender: r.sender,
      depth: Number(r.depth),
      streamOrdering: Number(r.stream_ordering),
      prevEvents: pdu.prev_events,
      edges: (edgesByNid.get(Number(r.event_nid)) ?? []).sort(),
      body: pdu.content.body,
    };
  });
}

/** True once GET /rooms/{roomId}/messages is served (another module adds it). */
async function messagesEndpointExists(user: User, roomId: string): Promise<boolean> {
  const res = await user.get(`/_matrix/client/v3/rooms/${rid(roomId)}/messages?dir=b&limit=1`);
  return !(res.status === 404 && res.body.errcode === 'M_UNRECOGNIZED');
}

/**
 * The room's timeline as `user` sees it, oldest first: GET /messages backwards from the end, paging until there
 * is no `end`. Before that endpoint exists, the same events from the database in stream order.
 */
async function readTimeline(server: TestServer, user: User, roomId: string): Promise<TimelineEvent[]> {
  if (!(await messagesEndpointExists(user, roomId))) {
    const stored = await storedEvents(server, roomId);
    return stored.map((e) => ({
      event_id: e.eventId,
      type: e.type,
      sender: e.sender,
      content: e.body === undefined ? {} : { body: e.body },
    }));
  }
  const newestFirst: TimelineEvent[] = [];
  let from: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const q = new URLSearchParams({ dir: 'b', limit: '37' });
    if (from !== undefined) q.set('from', from);
    const res = await user.get(`/_matrix/client/v3/rooms/${rid(roomId)}/messages?${q}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const chunk = res.body.chunk as TimelineEvent[];
    assert.ok(Array.isArray(chunk), 'chunk is an array');
    newestFirst.push(...chunk);
    const end = res.body.end as string | undefined;
    if (end === undefined) return newestFirst.reverse();
    assert.notEqual(end, from, 'pagination makes progress');
    from = end;
  }
  assert.fail('pagination did not end after 1000 pages');
}

/**
 * Asserts the room's events form one linear chain: the create event has no prev_events, each later event's
 * prev_events (in the PDU and in event_edges) is exactly the previous event in stream order, depth goes up by one,
 * and the single forward extremity is the last event.
 */
async function assertLinear(server: TestServer, roomId: string): Promise<StoredEvent[]> {
  const events = await storedEvents(server, roomId);
  assert.ok(events.length > 0, 'the room has events');
  const [first] = events as [StoredEvent];
  assert.equal(first.type, 'm.room.create');
  assert.deepEqual(first.prevEvents, []);
  const orderings = new Set(events.map((e) => e.streamOrdering));
  assert.equal(orderings.size, events.length, 'stream orderings are unique');
  for (let i = 1; i < events.length; i++) {
    const prev = events[i - 1] as StoredEvent;
    const ev = events[i] as StoredEvent;
    assert.deepEqual(ev.prevEvents, [prev.eventId], `event ${i} (${ev.type}) follows event ${i - 1}`);
    assert.deepEqual(ev.edges, [prev.eventId], `event_edges of event ${i} match its prev_events`);
    assert.equal(ev.depth, prev.depth + 1, `depth of event ${i}`);
  }
  const db = server.hs.storage.db;
  const extremities = await db
    .selectFrom('forward_extremities as f')
    .innerJoin('rooms as r', 'r.room_nid', 'f.room_nid')
    .innerJoin('events as e', 'e.event_nid', 'f.event_nid')
    .select('e.event_id')
    .where('r.room_id', '=', roomId)
    .execute();
  assert.deepEqual(
    extremities.map((x) => x.event_id),
    [(events[events.length - 1] as StoredEvent).eventId],
    'exactly one forward extremity: the last event',
  );
  return events;
}

/** `sender #k` for k in 0..n-1: the bodies one sender sends. */
function bodiesOf(user: User, n: number): string[] {
  return Array.from({ length: n }, (_, k) => `${user.userId} #${k}`);
}

/** Sends every body of every (user, room) pair at once; returns the event ids, asserting each send succeeded. */
async function sendAll(jobs: { user: User; roomId: string; bodies: string[] }[]): Promise<string[]> {
  const sends = jobs.flatMap(({ user, roomId, bodies }) =>
    bodies.map(async (body, k) => {
      const res = await user.put(
        `/_matrix/client/v3/rooms/${rid(roomId)}/send/m.room.message/c${k}-${rid(roomId)}`,
        {
          msgtype: 'm.text',
          body,
        },
      );
      assert.equal(res.status, 200, `${body}: ${JSON.stringify(res.body)}`);
      return res.body.event_id as string;
    }),
  );
  return Promise.all(sends);
}

/** Counts the messages of a timeline by sender and checks each sender's bodies are exactly `expected`. */
function assertBodies(timeline: TimelineEvent[], expected: Map<string, string[]>): void {
  const got = new Map<string, string[]>();
  for (const ev of timeline) {
    if (ev.type !== 'm.room.message') continue;
    const list = got.get(ev.sender) ?? [];
    list.push(String(ev.content.body));
    got.set(ev.sender, list);
  }
  assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort(), 'the senders');
  for (const [sender, bodies] of expected) {
    assert.deepEqual((got.get(sender) ?? []).sort(), [...bodies].sort(), `the bodies from ${sender}`);
  }
}

for (const engine of ENGINES) {
  describe(`${engine}: concurrent sends`, () => {
    let server: TestServer;
    let users: User[];
    before(async () => {
      server = await startTestServer(engine);
      users = await Promise.all(Array.from({ length: USERS }, (_, i) => server.user(`writer${i}`)));
    });
    after(() => server.close());

    it(`${USERS} clients sending ${PER_USER} messages each at once into one room make one linear chain`, async () => {
      const owner = users[0] as User;
      const created = await owner.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const roomId = created.body.room_id as string;
      for (const u of users.slice(1)) {
        const joined = await u.post(`/_matrix/client/v3/rooms/${rid(roomId)}/join`, {});
        assert.equal(joined.status, 200, JSON.stringify(joined.body));
      }

      const expected = new Map(users.map((u) => [u.userId, bodiesOf(u, PER_USER)]));
      const ids = await sendAll(users.map((user) => ({ user, roomId, bodies: bodiesOf(user, PER_USER) })));
      assert.equal(ids.length, USERS * PER_USER);
      assert.equal(new Set(ids).size, USERS * PER_USER, 'every send made its own event');

      const events = await assertLinear(server, roomId);
      const messages = events.filter((e) => e.type === 'm.room.message');
      assert.equal(messages.length, USERS * PER_USER, 'exactly the messages sent are stored');
      assert.deepEqual(messages.map((e) => e.eventId).sort(), [...ids].sort());

      const readerA = users[3] as User;
      const readerB = users[17] as User;
      const [seenA, seenB] = await Promise.all([
        readTimeline(server, readerA, roomId),
        readTimeline(server, readerB, roomId),
      ]);
      const idsA = seenA.map((e) => e.event_id);
      const idsB = seenB.map((e) => e.event_id);
      assert.equal(new Set(idsA).size, idsA.length, 'no event is returned twice');
      assert.deepEqual(idsA, idsB, 'both readers see the same events in the same order');
      const messageIds = (tl: TimelineEvent[]): string[] =>
        tl.filter((e) => e.type === 'm.room.message').map((e) => e.event_id);
      assert.deepEqual(
        messageIds(seenA),
        messages.map((e) => e.eventId),
        'the messages come back in the stream order of the stored chain',
      );
      const seenMessages = seenA.filter((e) => e.type === 'm.room.message');
      assert.equal(seenMessages.length, USERS * PER_USER);
      assertBodies(seenA, expected);
    });

    it(`${USERS} rooms written in parallel each get their own linear chain`, async () => {
      const rooms = await Promise.all(
        users.map(async (owner) => {
          const created = await owner.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
          assert.equal(created.status, 200, JSON.stringify(created.body));
          return created.body.room_id as string;
        }),
      );
      // Each room has two writers: its owner and the next user, who joins while other rooms are being created.
      const guests = users.map((_, i) => users[(i + 1) % USERS] as User);
      await Promise.all(
        rooms.map(async (roomId, i) => {
          const res = await (guests[i] as User).post(`/_matrix/client/v3/rooms/${rid(roomId)}/join`, {});
          assert.equal(res.status, 200, JSON.stringify(res.body));
        }),
      );

      const jobs = rooms.flatMap((roomId, i) => [
        { user: users[i] as User, roomId, bodies: bodiesOf(users[i] as User, PER_USER) },
        { user: guests[i] as User, roomId, bodies: bodiesOf(guests[i] as User, PER_USER) },
      ]);
      const ids = await sendAll(jobs);
      assert.equal(new Set(ids).size, USERS * PER_USER * 2, 'every send made its own event');

      for (const [i, roomId] of rooms.entries()) {
        const events = await assertLinear(server, roomId);
        const owner = users[i] as User;
        const guest = guests[i] as User;
        const expected = new Map([
          [owner.userId, bodiesOf(owner, PER_USER)],
          [guest.userId, bodiesOf(guest, PER_USER)],
        ]);
        const messages = events.filter((e) => e.type === 'm.room.message');
        assert.equal(messages.length, PER_USER * 2, `room ${i} holds exactly its own messages`);
        const timeline = await readTimeline(server, owner, roomId);
        assert.deepEqual(
          timeline.filter((e) => e.type === 'm.room.message').map((e) => e.event_id),
          messages.map((e) => e.eventId),
          `room ${i}: the messages come back in the stream order of its stored chain`,
        );
        assertBodies(timeline, expected);
      }
    });
  });
}
