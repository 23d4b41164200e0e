/**
 * The deprecated endpoints over real HTTP: the event stream (GET /events: long-poll, token chaining, timeout,
 * visibility, peeking), GET /initialSync, GET /rooms/{roomId}/initialSync (joined, departed, never joined,
 * world_readable), GET /events/{eventId}, and POST send without a transaction id. Response bodies are checked
 * against old_sync.yaml and room_initial_sync.yaml of the spec.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { responseProblems } from '../helpers/openapi-shape.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { bodies, createRoom, enc, join, post, putState, sleep, sync, text, type User } from './sync-util.js';

/** Long enough for a long-poll to have computed its empty answer and started waiting. */
const SETTLE_MS = 150;
const LONG = 15_000;

function assertShape(file: string, path: string, body: Json): void {
  const problems = responseProblems(file, path, 'get', 200, body);
  assert.deepEqual(problems, [], `${path} response against ${file}: ${JSON.stringify(body).slice(0, 2000)}`);
}

async function events(user: User, params: Record<string, string | number>): Promise<Json> {
  const qs = Object.entries(params)
    .map(([k, v]) => `${k}=${enc(String(v))}`)
    .join('&');
  const res = await user.get(`/_matrix/client/v3/events?${qs}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  // Presence travels in the chunk too (as Synapse sends it), outside the ClientEvent schema of the spec.
  const roomEvents = (res.body.chunk as Json[]).filter((e) => e.type !== 'm.presence');
  assertShape('old_sync.yaml', '/events', { ...res.body, chunk: roomEvents });
  return res.body;
}

const chunkOf = (body: Json): Json[] => body.chunk as Json[];
const messages = (list: Json[]): Json[] => list.filter((e) => e.type === 'm.room.message');

async function initialSync(user: User, query = ''): Promise<Json> {
  const res = await user.get(`/_matrix/client/v3/initialSync${query}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assertShape('old_sync.yaml', '/initialSync', res.body);
  return res.body;
}

async function roomInitialSync(user: User, roomId: string, query = ''): Promise<Json> {
  const res = await user.get(`/_matrix/client/v3/rooms/${enc(roomId)}/initialSync${query}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assertShape('room_initial_sync.yaml', '/rooms/{roomId}/initialSync', res.body);
  return res.body;
}

const roomIn = (body: Json, roomId: string): Json | undefined =>
  (body.rooms as Json[]).find((r) => r.room_id === roomId);

const stateOf = (room: Json, type: string, key = ''): Json | undefined =>
  (room.state as Json[]).find((e) => e.type === type && e.state_key === key);

const chunkBodies = (room: Json): string[] => bodies((room.messages as Json).chunk as Json[]);

async function leave(user: User, roomId: string): Promise<void> {
  await post(user, `/_matrix/client/v3/rooms/${enc(roomId)}/leave`);
}

for (const engine of ENGINES) {
  describe(`${engine}: GET /events (the old event stream)`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let room: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ev_alice');
      bob = await server.user('ev_bob');
      room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
    });
    after(() => server.close());

    /** The stream's current end, without waiting. */
    const now = async (u: User): Promise<string> => (await events(u, { timeout: 0 })).end as string;

    it('a long-poll is woken by a new message in a joined room', async () => {
      const from = await now(alice);
      const started = Date.now();
      const poll = events(alice, { from, timeout: LONG });
      await sleep(SETTLE_MS);
      const sent = await text(bob, room, 'wake up');
      const body = await poll;
      const ms = Date.now() - started;
      assert.ok(ms < LONG / 2, `answered after ${ms} ms`);
      const [msg] = messages(chunkOf(body));
      assert.equal(msg?.event_id, sent);
      assert.equal(msg?.room_id, room);
      assert.equal(msg?.sender, bob.userId);
      assert.equal(body.start, from);
      assert.notEqual(body.end, from);
    });

    it('without `from` it streams from now: older events are not replayed', async () => {
      await text(bob, room, 'old news');
      const poll = events(alice, { timeout: LONG });
      await sleep(SETTLE_MS);
      await text(bob, room, 'fresh');
      assert.deepEqual(bodies(chunkOf(await poll)), ['fresh']);
    });

    it('from/end tokens chain: each event is delivered once, `limit` splits a burst', async () => {
      const from = await now(alice);
      for (const b of ['one', 'two', 'three']) await text(bob, room, b);
      const first = await events(alice, { from, timeout: 0, limit: 2 });
      assert.deepEqual(bodies(chunkOf(first)), ['one', 'two']);
      const second = await events(alice, { from: first.end as string, timeout: 0, limit: 2 });
      assert.equal(second.start, first.end);
      assert.deepEqual(bodies(chunkOf(second)), ['three']);
      const third = await events(alice, { from: second.end as string, timeout: 0 });
      assert.deepEqual(chunkOf(third), []);
      assert.equal(third.end, second.end, 'nothing new: the token does not move');
      // The whole range again from the first token, without a limit.
      assert.deepEqual(bodies(chunkOf(await events(alice, { from, timeout: 0 }))), ['one', 'two', 'three']);
    });

    it('a timeout with nothing new answers an empty chunk after the timeout', async () => {
      const from = await now(alice);
      const started = Date.now();
      const body = await events(alice, { from, timeout: 400 });
      const ms = Date.now() - started;
      assert.ok(ms >= 350, `answered after ${ms} ms, before the timeout`);
      assert.deepEqual(body.chunk, []);
      assert.equal(body.start, from);
      assert.equal(body.end, from);
    });

    it('is not woken by a room the user is not in, and never shows its events', async () => {
      const other = await createRoom(bob, { preset: 'private_chat' });
      const from = await now(alice);
      const started = Date.now();
      const poll = events(alice, { from, timeout: 600 });
      await sleep(SETTLE_MS);
      await text(bob, other, 'not for alice');
      const body = await poll;
      assert.ok(Date.now() - started >= 550, 'waited for the timeout');
      assert.deepEqual(messages(chunkOf(body)), []);
      // The token moved past the invisible event: the next poll does not see it either.
      assert.deepEqual(messages(chunkOf(await events(alice, { from: body.end as string, timeout: 0 }))), []);
    });

    it('delivers an invite to a room the user is not in yet (their own membership event)', async () => {
      const from = await now(alice);
      const poll = events(alice, { from, timeout: LONG });
      await sleep(SETTLE_MS);
      const invited = await createRoom(bob, { preset: 'private_chat', invite: [alice.userId] });
      const body = await poll;
      const invite = chunkOf(body).find((e) => e.type === 'm.room.member' && e.state_key === alice.userId);
      assert.equal(invite?.room_id, invited);
      assert.equal((invite?.content as Json).membership, 'invite');
    });

    it('carries the presence of users sharing a room, with user_id in the content', async () => {
      const from = await now(alice);
      const poll = events(alice, { from, timeout: LONG });
      await sleep(SETTLE_MS);
      await bob.put(`/_matrix/client/v3/presence/${enc(bob.userId)}/status`, { presence: 'unavailable' });
      const p = chunkOf(await poll).find((e) => e.type === 'm.presence');
      assert.equal(p?.sender, bob.userId);
      assert.deepEqual(
        { presence: (p.content as Json).presence, user_id: (p.content as Json).user_id },
        { presence: 'unavailable', user_id: bob.userId },
      );
    });

    it('accepts a /sync next_batch and an /initialSync end as `from`', async () => {
      const s = await sync(alice, { timeout: 0, set_presence: 'offline' });
      const i = await initialSync(alice, '?limit=0');
      await text(bob, room, 'after both tokens');
      for (const from of [s.next_batch as string, i.end as string]) {
        const body = await events(alice, { from, timeout: 0 });
        assert.deepEqual(bodies(chunkOf(body)), ['after both tokens']);
      }
    });

    it('refuses a malformed token with M_INVALID_PARAM', async () => {
      const res = await alice.get('/_matrix/client/v3/events?from=nonsense&timeout=0');
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_INVALID_PARAM');
    });

    it('requires an access token', async () => {
      const res = await alice.get('/_matrix/client/v3/events?timeout=0', { token: null });
      assert.equal(res.status, 401);
      assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
    });

    it('room_id peeks into a world_readable room only', async () => {
      const open = await createRoom(bob, {
        preset: 'public_chat',
        initial_state: [
          { type: 'm.room.history_visibility', content: { history_visibility: 'world_readable' } },
        ],
      });
      const closed = await createRoom(bob, { preset: 'private_chat' });
      const from = await now(alice);
      await text(bob, open, 'readable by all');
      const body = await events(alice, { from, timeout: 0, room_id: open });
      assert.deepEqual(bodies(chunkOf(body)), ['readable by all']);
      const denied = await alice.get(`/_matrix/client/v3/events?timeout=0&room_id=${enc(closed)}`);
      assert.equal(denied.status, 403);
      assert.equal(denied.body.errcode, 'M_FORBIDDEN');
    });
  });

  describe(`${engine}: GET /initialSync, GET /rooms/{roomId}/initialSync, GET /events/{eventId}`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    let room: string;
    let privateRoom: string;
    let leftRoom: string;
    let invitedRoom: string;
    let beforeLeave: string;
    let afterLeave: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('is_alice');
      bob = await server.user('is_bob');
      carol = await server.user('is_carol');
      room = await createRoom(alice, { preset: 'public_chat', visibility: 'public', name: 'Lobby' });
      await join(bob, room);
      for (const b of ['m1', 'm2', 'm3']) await text(alice, room, b);
      await alice.put(`/_matrix/client/v3/user/${enc(alice.userId)}/rooms/${enc(room)}/tags/u.work`, {
        order: 0.5,
      });
      await alice.put(`/_matrix/client/v3/user/${enc(alice.userId)}/account_data/org.example.global`, {
        a: 1,
      });

      privateRoom = await createRoom(bob, { preset: 'private_chat' });
      await text(bob, privateRoom, 'secret');

      leftRoom = await createRoom(bob, { preset: 'public_chat', topic: 'before' });
      await join(alice, leftRoom);
      beforeLeave = await text(bob, leftRoom, 'while alice was there');
      await leave(alice, leftRoom);
      afterLeave = await text(bob, leftRoom, 'after alice left');
      await putState(bob, leftRoom, 'm.room.topic', { topic: 'after' });

      invitedRoom = await createRoom(bob, { preset: 'private_chat', invite: [alice.userId] });
    });
    after(() => server.close());

    it('/initialSync lists joined and invited rooms with messages, state and account data', async () => {
      const body = await initialSync(alice, '?limit=2');
      const lobby = roomIn(body, room);
      assert.ok(lobby, 'the joined room is listed');
      assert.equal(lobby.membership, 'join');
      assert.equal(lobby.visibility, 'public');
      assert.deepEqual(chunkBodies(lobby), ['m2', 'm3'], 'the newest `limit` messages, oldest first');
      assert.equal((stateOf(lobby, 'm.room.name')?.content as Json).name, 'Lobby');
      assert.equal((stateOf(lobby, 'm.room.member', bob.userId)?.content as Json).membership, 'join');
      assert.deepEqual((lobby.account_data as Json[]).find((e) => e.type === 'm.tag')?.content, {
        tags: { 'u.work': { order: 0.5 } },
      });
      const invited = roomIn(body, invitedRoom);
      assert.equal(invited?.membership, 'invite');
      assert.equal(invited.visibility, 'private');
      assert.equal(invited.inviter, bob.userId);
      assert.equal((invited.invite as Json).state_key, alice.userId);
      assert.equal(invited.messages, undefined, 'no timeline for an invite');
      assert.equal(roomIn(body, privateRoom), undefined, 'a room the user never joined is absent');
      assert.equal(roomIn(body, leftRoom), undefined, 'a left room only with archived=true');
      assert.deepEqual((body.account_data as Json[]).find((e) => e.type === 'org.example.global')?.content, {
        a: 1,
      });
      assert.equal(typeof body.end, 'string');
    });

    it('/initialSync messages.start pages back with /messages; end continues with /events', async () => {
      const body = await initialSync(alice, '?limit=1');
      const lobby = roomIn(body, room) as Json;
      assert.deepEqual(chunkBodies(lobby), ['m3']);
      const start = (lobby.messages as Json).start as string;
      const older = await alice.get(
        `/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=1&from=${enc(start)}`,
      );
      assert.equal(older.status, 200);
      assert.deepEqual(bodies(older.body.chunk as Json[]), ['m2']);
      await text(bob, room, 'after the snapshot');
      const next = await events(alice, { from: body.end as string, timeout: 0 });
      assert.deepEqual(bodies(chunkOf(next)), ['after the snapshot']);
    });

    it('/initialSync?archived=true adds the left room, capped at the leave', async () => {
      const body = await initialSync(alice, '?archived=true');
      const left = roomIn(body, leftRoom);
      assert.equal(left?.membership, 'leave');
      const chunk = (left.messages as Json).chunk as Json[];
      assert.ok(chunk.some((e) => e.event_id === beforeLeave));
      assert.ok(!chunk.some((e) => e.event_id === afterLeave), 'nothing after the leave');
      assert.equal((stateOf(left, 'm.room.topic')?.content as Json).topic, 'before', 'state as at the leave');
    });

    it('/rooms/{roomId}/initialSync for a joined user: current state and recent messages', async () => {
      const body = await roomInitialSync(bob, room, '?limit=3');
      assert.equal(body.room_id, room);
      assert.equal(body.membership, 'join');
      assert.equal(((body.messages as Json).chunk as Json[]).length, 3);
      assert.equal(
        (stateOf(body, 'm.room.create')?.content as Json | undefined)?.room_version !== undefined,
        true,
      );
      assert.ok(Array.isArray(body.presence));
      assert.ok(Array.isArray(body.receipts));
    });

    it('/rooms/{roomId}/initialSync for a departed user: state and messages as at the leave', async () => {
      const body = await roomInitialSync(alice, leftRoom);
      assert.equal(body.membership, 'leave');
      const chunk = (body.messages as Json).chunk as Json[];
      assert.ok(chunk.some((e) => e.event_id === beforeLeave));
      assert.ok(!chunk.some((e) => e.event_id === afterLeave));
      assert.equal((stateOf(body, 'm.room.topic')?.content as Json).topic, 'before');
    });

    it('/rooms/{roomId}/initialSync refuses a never-joined user of a private room, and an invited one', async () => {
      for (const [user, roomId] of [
        [carol, privateRoom],
        [alice, invitedRoom],
      ] as const) {
        const res = await user.get(`/_matrix/client/v3/rooms/${enc(roomId)}/initialSync`);
        assert.equal(res.status, 403, JSON.stringify(res.body));
        assert.equal(res.body.errcode, 'M_FORBIDDEN');
      }
      const unknown = await alice.get(`/_matrix/client/v3/rooms/${enc('!nowhere:test.local')}/initialSync`);
      assert.equal(unknown.status, 403);
    });

    it('/rooms/{roomId}/initialSync lets anyone read a world_readable room, without membership', async () => {
      const open = await createRoom(bob, {
        preset: 'public_chat',
        initial_state: [
          { type: 'm.room.history_visibility', content: { history_visibility: 'world_readable' } },
        ],
      });
      await text(bob, open, 'for everyone');
      const body = await roomInitialSync(carol, open);
      assert.equal(body.membership, undefined);
      assert.deepEqual(bodies((body.messages as Json).chunk as Json[]), ['for everyone']);
    });

    it('/events/{eventId}: an event the user may see, 404 for everything else', async () => {
      const visible = await text(bob, room, 'look at me');
      const res = await alice.get(`/_matrix/client/v3/events/${enc(visible)}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(responseProblems('old_sync.yaml', '/events/{eventId}', 'get', 200, res.body), []);
      assert.equal(res.body.event_id, visible);
      assert.equal(res.body.room_id, room);
      assert.equal((res.body.content as Json).body, 'look at me');

      const secret = await text(bob, privateRoom, 'hidden');
      const cases: [User, string, string][] = [
        [alice, secret, 'a room alice never joined'],
        [alice, afterLeave, 'sent after alice left'],
        [alice, '$doesnotexist', 'an unknown id'],
        [alice, '$weird id with spaces:and/slashes', 'an unusual id'],
      ];
      for (const [user, eventId, why] of cases) {
        const r = await user.get(`/_matrix/client/v3/events/${enc(eventId)}`);
        assert.equal(r.status, 404, `${why}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.errcode, 'M_NOT_FOUND', why);
      }
      const before = await alice.get(`/_matrix/client/v3/events/${enc(beforeLeave)}`);
      assert.equal(before.status, 200, 'an event from before the leave is still readable');
    });
  });

  describe(`${engine}: long-polls at shutdown`, () => {
    it('/events and /sync waiting for nothing answer at once when the server closes', async () => {
      const server = await startTestServer(engine);
      const u = await server.user('sd_user');
      const since = (await sync(u, { set_presence: 'offline' })).next_batch as string;
      const polls = [
        u.get(`/_matrix/client/v3/events?timeout=${LONG}`),
        u.get(`/_matrix/client/v3/sync?set_presence=offline&timeout=${LONG}&since=${enc(since)}`),
      ];
      await sleep(SETTLE_MS);
      const started = Date.now();
      await server.close();
      const ms = Date.now() - started;
      assert.ok(ms < LONG / 3, `shutdown took ${ms} ms: a woken long-poll kept waiting`);
      const [ev, sy] = await Promise.all(polls);
      assert.equal(ev?.status, 200);
      assert.deepEqual(ev.body.chunk, []);
      assert.equal(sy?.status, 200);
    });
  });

  describe(`${engine}: POST /rooms/{roomId}/send/{eventType} without a transaction id`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let room: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ps_alice');
      bob = await server.user('ps_bob');
      room = await createRoom(alice, { preset: 'private_chat' });
    });
    after(() => server.close());

    it('sends each request as a new event (no idempotency)', async () => {
      const path = `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message`;
      const content = { msgtype: 'm.text', body: 'posted' };
      const a = await alice.post(path, content);
      const b = await alice.post(path, content);
      assert.equal(a.status, 200, JSON.stringify(a.body));
      assert.equal(b.status, 200);
      assert.match(a.body.event_id as string, /^\$/);
      assert.notEqual(a.body.event_id, b.body.event_id);
      const page = await alice.get(`/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=2`);
      assert.deepEqual(
        (page.body.chunk as Json[]).map((e) => e.event_id),
        [b.body.event_id, a.body.event_id],
      );
    });

    it('is refused for a non-member and for a non-object body', async () => {
      const path = `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message`;
      const outsider = await bob.post(path, { msgtype: 'm.text', body: 'let me in' });
      assert.equal(outsider.status, 403);
      assert.equal(outsider.body.errcode, 'M_FORBIDDEN');
      const bad = await alice.request('POST', path, undefined, { raw: '[1,2]' });
      assert.equal(bad.status, 400);
    });
  });
}
