/**
 * Backfill for a late joiner: a user of B joins a room of A that has 60 messages and a few state changes; paginating
 * /messages backwards on B past the join fetches the history from A with /backfill, page after page, in order and
 * without duplicates, with the state each event had (/context), without touching B's current state or showing the
 * history as new in /sync, and both doctors stay clean. With history_visibility "joined" B's user sees nothing from
 * before the join; with A down, pagination answers cleanly with what B has.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runDoctor } from '../../src/integrity/doctor.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import type { Client } from '../helpers/server.js';
import { until } from '../helpers/until.js';

type Me = Client & { userId: string };
interface Ev {
  event_id: string;
  type: string;
  sender: string;
  state_key?: string;
  content: { body?: string; topic?: string; name?: string; membership?: string; history_visibility?: string };
}

async function doctorClean(s: FederatedServer, roomId: string): Promise<void> {
  const report = await runDoctor(s.hs.storage, {
    roomId,
    exclusive: (id, fn) => s.hs.writer.runExclusive(id, fn),
  });
  assert.deepEqual(report.problems, []);
}

async function send(c: Me, roomId: string, txn: string, type: string, content: object, stateKey?: string) {
  const r = encodeURIComponent(roomId);
  const res =
    stateKey === undefined
      ? await c.put(`/_matrix/client/v3/rooms/${r}/send/${type}/${txn}`, content)
      : await c.put(`/_matrix/client/v3/rooms/${r}/state/${type}/${stateKey}`, content);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function createWithMessages(alice: Me, n: number, extra: object = {}): Promise<string> {
  const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat', ...extra });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const roomId = created.body.room_id as string;
  for (let i = 1; i <= n; i++)
    await send(alice, roomId, `m${i}`, 'm.room.message', { msgtype: 'm.text', body: `m${i}` });
  return roomId;
}

async function join(bob: Me, a: FederatedServer, roomId: string): Promise<void> {
  const r = encodeURIComponent(roomId);
  const joined = await bob.post(
    `/_matrix/client/v3/join/${r}?server_name=${encodeURIComponent(a.serverName)}`,
  );
  assert.equal(joined.status, 200, JSON.stringify(joined.body));
}

/** Every page of /messages backwards from the newest event, until `end` is absent (at most `pages`). */
async function paginateAll(
  c: Me,
  roomId: string,
  limit: number,
  pages = 12,
): Promise<{ events: Ev[]; count: number }> {
  const r = encodeURIComponent(roomId);
  const events: Ev[] = [];
  let from: string | undefined;
  for (let i = 0; i < pages; i++) {
    const q = `dir=b&limit=${limit}${from ? `&from=${encodeURIComponent(from)}` : ''}`;
    const res = await c.get(`/_matrix/client/v3/rooms/${r}/messages?${q}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const chunk = res.body.chunk as Ev[];
    assert.ok(chunk.length <= limit);
    events.push(...chunk);
    from = res.body.end as string | undefined;
    if (from === undefined) return { events, count: i + 1 };
  }
  throw new Error('pagination did not end');
}

const bodies = (events: readonly Ev[]) =>
  events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);

for (const engine of ENGINES) {
  describe(`${engine}: backfill for a late joiner`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let c: FederatedServer;
    let carol: Me;
    let alice: Me;
    let bob: Me;

    before(async () => {
      a = await startFederatedServer(engine);
      c = await startFederatedServer(engine);
      carol = await c.user('carol');
      b = await startFederatedServer(engine);
      alice = await a.user('alice');
      bob = await b.user('bob');
    });
    after(async () => {
      await Promise.allSettled([a.close(), b.close(), c.close()]);
    });

    let aloneRoom = '';
    let sharedRoom = '';

    it('pages through 60 older messages from A, in order, with the state they had', async () => {
      const created = await alice.post('/_matrix/client/v3/createRoom', {
        preset: 'public_chat',
        name: 'first name',
        topic: 'topic one',
      });
      const roomId = created.body.room_id as string;
      const r = encodeURIComponent(roomId);
      const ids = new Map<string, string>();
      for (let i = 1; i <= 60; i++) {
        ids.set(
          `m${i}`,
          await send(alice, roomId, `m${i}`, 'm.room.message', { msgtype: 'm.text', body: `m${i}` }),
        );
        if (i === 30) await send(alice, roomId, '', 'm.room.topic', { topic: 'topic two' }, '');
        if (i === 45) await send(alice, roomId, '', 'm.room.name', { name: 'second name' }, '');
      }
      // A redaction newer than everything: B gets it in the first batch, its target two batches later.
      const redacted = await alice.put(
        `/_matrix/client/v3/rooms/${r}/redact/${encodeURIComponent(ids.get('m10') as string)}/x1`,
        { reason: 'oops' },
      );
      assert.equal(redacted.status, 200, JSON.stringify(redacted.body));
      // Created now so that its history is on A before A goes down (last test).
      aloneRoom = await createWithMessages(alice, 10);
      // A room whose history C has too (carol joined before its messages).
      sharedRoom = await createWithMessages(alice, 0);
      await join(carol, a, sharedRoom);
      for (let i = 1; i <= 25; i++)
        await send(alice, sharedRoom, `s${i}`, 'm.room.message', { msgtype: 'm.text', body: `s${i}` });
      await until('the messages on C', async () => {
        const res = await carol.get(
          `/_matrix/client/v3/rooms/${encodeURIComponent(sharedRoom)}/messages?dir=b&limit=1`,
        );
        return bodies((res.body.chunk as Ev[] | undefined) ?? []).includes('s25') ? true : undefined;
      });

      await join(bob, a, roomId);
      const initial = await bob.get('/_matrix/client/v3/sync?timeout=0');
      const since = initial.body.next_batch as string;
      const stateBefore = await bob.get(`/_matrix/client/v3/rooms/${r}/state`);
      const membersBefore = await b.hs.storage.db
        .selectFrom('room_members')
        .selectAll()
        .orderBy('user_id')
        .execute();

      const { events, count } = await paginateAll(bob, roomId, 20);
      assert.ok(count >= 4, `pages: ${count}`);
      const expected = Array.from({ length: 60 }, (_, i) => (i === 50 ? undefined : `m${60 - i}`));
      assert.deepEqual(bodies(events), expected);
      const m10 = events.find((e) => e.event_id === ids.get('m10'));
      assert.deepEqual(m10?.content, {});
      assert.equal(
        (m10 as { unsigned?: { redacted_because?: { event_id?: string } } }).unsigned?.redacted_because
          ?.event_id,
        redacted.body.event_id,
      );
      const seen = events.map((e) => e.event_id);
      assert.equal(new Set(seen).size, seen.length, 'no event twice');
      // The whole history down to the create event, state changes included, in graph order.
      assert.equal(events[events.length - 1]?.type, 'm.room.create');
      const topics = events.filter((e) => e.type === 'm.room.topic').map((e) => e.content.topic);
      assert.deepEqual(topics, ['topic two', 'topic one']);

      // /context on backfilled events gives the state as it was then.
      const ctx = async (id: string) => {
        const res = await bob.get(`/_matrix/client/v3/rooms/${r}/context/${encodeURIComponent(id)}?limit=2`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const state = res.body.state as Ev[];
        return {
          topic: state.find((e) => e.type === 'm.room.topic')?.content.topic,
          name: state.find((e) => e.type === 'm.room.name')?.content.name,
        };
      };
      assert.deepEqual(await ctx(ids.get('m20') as string), { topic: 'topic one', name: 'first name' });
      assert.deepEqual(await ctx(ids.get('m40') as string), { topic: 'topic two', name: 'first name' });
      assert.deepEqual(await ctx(ids.get('m50') as string), { topic: 'topic two', name: 'second name' });

      // Backfilled events sit below every live position, older ones lower.
      const rows = await b.hs.storage.db
        .selectFrom('events')
        .select(['event_id', 'stream_ordering', 'depth'])
        .where('event_id', 'in', [...ids.values()])
        .orderBy('depth')
        .execute();
      assert.equal(rows.length, 60);
      const positions = rows.map((x) => Number(x.stream_ordering));
      assert.ok(positions.every((p) => p < 0));
      assert.deepEqual(
        [...positions].sort((x, y) => x - y),
        positions,
      );

      // Nothing of it is new to /sync, and B's current state and memberships are as before.
      const inc = await bob.get(`/_matrix/client/v3/sync?timeout=0&since=${encodeURIComponent(since)}`);
      assert.equal(inc.status, 200);
      const joinedRooms = (
        inc.body.rooms as { join?: Record<string, { timeline: { events: Ev[] } }> } | undefined
      )?.join;
      const newEvents = joinedRooms?.[roomId]?.timeline.events ?? [];
      assert.deepEqual(newEvents, []);
      const stateAfter = await bob.get(`/_matrix/client/v3/rooms/${r}/state`);
      const stateIds = (x: unknown) =>
        (x as Ev[]).map((e) => `${e.type}/${e.state_key}=${e.event_id}`).sort();
      assert.deepEqual(stateIds(stateAfter.body), stateIds(stateBefore.body));
      const membersAfter = await b.hs.storage.db
        .selectFrom('room_members')
        .selectAll()
        .orderBy('user_id')
        .execute();
      assert.deepEqual(
        membersAfter.map((m) => [m.user_id, m.membership, Number(m.event_nid)]),
        membersBefore.map((m) => [m.user_id, m.membership, Number(m.event_nid)]),
      );

      // Live traffic still flows after backfill, and is new to /sync.
      const live = await send(alice, roomId, 'live', 'm.room.message', { msgtype: 'm.text', body: 'live' });
      const deadline = Date.now() + 20_000;
      for (;;) {
        const s = await bob.get(`/_matrix/client/v3/sync?timeout=1000&since=${encodeURIComponent(since)}`);
        const tl = (s.body.rooms as { join?: Record<string, { timeline: { events: Ev[] } }> } | undefined)
          ?.join?.[roomId]?.timeline.events;
        if (tl?.some((e) => e.event_id === live)) {
          assert.deepEqual(bodies(tl), ['live']);
          break;
        }
        assert.ok(Date.now() < deadline, 'the live message reaches B');
      }
      // Push: the live message notifies bob (a one-to-one room); no backfilled message ever did.
      const notified = await until('the live notification', async () => {
        const n = await bob.get('/_matrix/client/v3/notifications');
        const list = (n.body.notifications as { event: Ev }[] | undefined) ?? [];
        return list.some((x) => x.event.event_id === live) ? list : undefined;
      });
      assert.deepEqual(
        notified.map((x) => x.event.content.body),
        ['live'],
      );
      // An initial sync reaching into the history gives a prev_batch (a negative position) that continues below it.
      const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 5 } } }));
      const fresh = await bob.get(`/_matrix/client/v3/sync?timeout=0&filter=${filter}`);
      const timeline = (
        fresh.body.rooms as { join: Record<string, { timeline: { events: Ev[]; prev_batch: string } }> }
      ).join[roomId]?.timeline;
      assert.deepEqual(bodies(timeline?.events ?? []), ['m59', 'm60', 'live']);
      assert.match(timeline?.prev_batch ?? '', /^s-\d+$/);
      const older = await bob.get(
        `/_matrix/client/v3/rooms/${r}/messages?dir=b&limit=3&from=${encodeURIComponent(timeline?.prev_batch ?? '')}`,
      );
      assert.equal(older.status, 200, JSON.stringify(older.body));
      assert.deepEqual(bodies(older.body.chunk as Ev[]), ['m58', 'm57', 'm56']);
      await doctorClean(b, roomId);
      await doctorClean(a, roomId);
    });

    it('shows nothing from before the join when history_visibility is "joined"', async () => {
      const roomId = await createWithMessages(alice, 25, {
        initial_state: [
          { type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } },
        ],
      });
      await join(bob, a, roomId);
      const { events } = await paginateAll(bob, roomId, 10);
      assert.deepEqual(bodies(events), []);
      assert.ok(events.some((e) => e.type === 'm.room.member' && e.state_key === bob.userId));
      // Before the switch to "joined" the history was shared: the room's first state events, never a message.
      const hv = events.findIndex((e) => e.type === 'm.room.history_visibility');
      assert.equal(events[hv]?.content.history_visibility, 'joined');
      assert.ok(events.slice(0, hv).every((e) => e.sender === bob.userId));
      assert.equal(events.filter((e) => e.sender === alice.userId).length, events.length - hv);
      // A served the messages B's server could not see redacted: their bodies never reached B's database.
      const rows = await b.hs.storage.db
        .selectFrom('events')
        .innerJoin('rooms', 'rooms.room_nid', 'events.room_nid')
        .select(['events.json'])
        .where('rooms.room_id', '=', roomId)
        .execute();
      assert.ok(
        rows.some((r) => r.json.includes('"m.room.message"')),
        'the redacted messages are in the graph',
      );
      assert.ok(!rows.some((r) => /"body":"m\d+"/.test(r.json)), 'no message body before the join reached B');
      await doctorClean(b, roomId);
    });

    it("asks the next server when the creator's server is down, and answers with what it has when none answers", async () => {
      await join(bob, a, aloneRoom);
      await join(bob, a, sharedRoom);
      await until('bob joined on C', async () => {
        const m = await carol.get(
          `/_matrix/client/v3/rooms/${encodeURIComponent(sharedRoom)}/joined_members`,
        );
        return bob.userId in ((m.body.joined as object | undefined) ?? {}) ? true : undefined;
      });
      await a.close();

      // Only A had the history of this room: a clean answer with what B has, and no token to go on.
      const res = await bob.get(
        `/_matrix/client/v3/rooms/${encodeURIComponent(aloneRoom)}/messages?dir=b&limit=20`,
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const chunk = res.body.chunk as Ev[];
      assert.ok(chunk.some((e) => e.type === 'm.room.member' && e.state_key === bob.userId));
      assert.deepEqual(bodies(chunk), []);
      assert.equal(res.body.end, undefined);
      await doctorClean(b, aloneRoom);

      // A (the creator's server, asked first) fails: C answers.
      const { events } = await paginateAll(bob, sharedRoom, 20);
      const expected = Array.from({ length: 25 }, (_, i) => `s${25 - i}`);
      assert.deepEqual(bodies(events), expected);
      await doctorClean(b, sharedRoom);
    });
  });
}
