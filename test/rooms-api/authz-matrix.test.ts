/**
 * The authorization matrix of the room read (and room-scoped write) endpoints: every endpoint × every
 * membership, in rooms of three history visibilities, on both engines. One server per engine; the rooms are
 * built once, then each table row is a few requests.
 *
 * Rules (Synapse's check_user_in_room_or_world_readable, departed users allowed where Synapse allows them):
 * joined → current state and everything; left / kicked / banned after having joined → reads capped at the event
 * that ended their stay, state as it was just after it; anyone else (never joined, invited, knocking, invite
 * rejected) → 403 unless the room is currently world_readable; receipts, read markers and typing need a join;
 * a deactivated user's token and a logged-out token → 401 M_UNKNOWN_TOKEN. History visibility applies to every
 * event read. Besides the status, every answer is checked for what must not be in it: nothing set or sent after
 * a departed member's cap, nothing at all from the room for a refused user.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import {
  startTestServer,
  type Client,
  type Json,
  type Response,
  type TestServer,
} from '../helpers/server.js';

type User = Client & { userId: string; deviceId: string };
const enc = encodeURIComponent;
const PASSWORD = 'correct horse battery staple';

const WHOS = [
  'joined',
  'never',
  'invited',
  'rejected',
  'knocked',
  'left',
  'kicked',
  'banned',
  'forgot',
  'returned',
  'deactivated',
  'loggedOut',
] as const;
type Who = (typeof WHOS)[number];

/** What a user may read of a room: everything, up to their departure, nothing, or not even authenticate. */
type View = 'all' | 'early' | 'none' | 'unauth';

const LOCALPARTS: Record<Who, string> = {
  joined: 'alice',
  never: 'nora',
  invited: 'ivy',
  rejected: 'rex',
  knocked: 'kim',
  left: 'leo',
  kicked: 'kai',
  banned: 'bea',
  forgot: 'fay',
  returned: 'ron',
  deactivated: 'dee',
  loggedOut: 'lou',
};

type Hv = 'shared' | 'joined' | 'world_readable';

interface RoomFx {
  hv: Hv;
  tag: string;
  roomId: string;
  rid: string;
  whos: readonly Who[];
  pre: string;
  early: string;
  root: string;
  replyEarly: string;
  late: string;
  replyLate: string;
  /** A token just after the message sent before anyone but alice joined. */
  preToken: string;
  /** The stream head once the room is complete. */
  lateToken: string;
  /** Every event id of the room after the departures. */
  lateIds: Set<string>;
  /** The event that ended each departed user's stay. */
  departures: Partial<Record<Who, string>>;
  /** Strings that only the room's history before anyone else joined contains. */
  preStrings: string[];
  /** Strings of the history while the members were there. */
  earlyStrings: string[];
  /** Strings of what happened after the departures (messages, an edit, state, a late invite). */
  lateStrings: string[];
}

/** Left, kicked or banned after having joined, and not forgotten (`returned` was re-invited and rejected it). */
const departed = (who: Who): boolean =>
  who === 'left' || who === 'kicked' || who === 'banned' || who === 'returned';

/** What `who` may read of a room; the user's membership there decides it. */
function viewOf(f: RoomFx, who: Who): View {
  if (who === 'deactivated' || who === 'loggedOut') return 'unauth';
  if (who === 'joined' || f.hv === 'world_readable') return 'all';
  return departed(who) ? 'early' : 'none';
}

/** Search covers the rooms the user is in, or was in up to their departure, whatever the room's visibility. */
function searchViewOf(who: Who): View {
  if (who === 'deactivated' || who === 'loggedOut') return 'unauth';
  if (who === 'joined') return 'all';
  return departed(who) ? 'early' : 'none';
}

interface Ctx {
  f: RoomFx;
  who: Who;
  user: User;
}

interface Endpoint {
  call(c: Ctx): Promise<Response>;
  /** Content checks of a 200. */
  ok?(res: Response, c: Ctx, view: View): void;
  /** The answer is a room summary (hierarchy): the current name may show, no history may. */
  summary?: boolean;
  /** The view that governs the content (search has its own). */
  viewOf?(f: RoomFx, who: Who): View;
}

const chunkOf = (res: Response, key = 'chunk'): Json[] => res.body[key] as unknown as Json[];
const ids = (events: Json[]): string[] => events.map((e) => e.event_id as string);
const bodies = (events: Json[]): string[] =>
  events.filter((e) => e.type === 'm.room.message').map((e) => (e.content as Json).body as string);
const roomName = (f: RoomFx, view: View): string =>
  view === 'all' ? `${f.tag} renamed late` : `${f.tag} initial`;

/** The message bodies of a timeline answer: the early ones always, the late ones exactly for `all`. */
function checkTimeline(events: Json[], view: View): void {
  const seen = bodies(events);
  assert.ok(seen.includes('marker early'), `early message missing: ${JSON.stringify(seen)}`);
  assert.equal(seen.includes('marker late'), view === 'all', `late message: ${JSON.stringify(seen)}`);
}

const get = (path: string) => (c: Ctx) => c.user.get(`/_matrix/client/v3/rooms/${c.f.rid}/${path}`);
const getV1 = (path: string) => (c: Ctx) => c.user.get(`/_matrix/client/v1/rooms/${c.f.rid}/${path}`);

const ENDPOINTS: Record<string, Endpoint> = {
  state: {
    call: get('state'),
    ok(res, { f }, view) {
      const state = res.body as unknown as Json[];
      const name = state.find((e) => e.type === 'm.room.name');
      assert.equal((name?.content as Json).name, roomName(f, view));
      assert.equal(
        state.some((e) => e.type === 'org.example.secret'),
        view === 'all',
      );
    },
  },
  state_name: {
    call: get('state/m.room.name/'),
    ok: (res, { f }, view) => assert.equal(res.body.name, roomName(f, view)),
  },
  state_secret: {
    call: get('state/org.example.secret/'),
    ok: (res) => assert.equal(res.body.note, 'secret late'),
  },
  members: {
    call: get('members'),
    ok(res, { who }, view) {
      const members = new Map(chunkOf(res).map((e) => [e.state_key, (e.content as Json).membership]));
      assert.equal(members.get('@alice:test.local'), 'join');
      assert.equal(members.get('@luke:test.local'), view === 'all' ? 'invite' : undefined);
      if (view === 'early')
        assert.equal(members.get(`@${LOCALPARTS[who]}:test.local`), who === 'banned' ? 'ban' : 'leave');
    },
  },
  members_at_late: {
    call: (c) => get(`members?at=${c.f.lateToken}`)(c),
    ok(res, _c, view) {
      const members = new Map(chunkOf(res).map((e) => [e.state_key, (e.content as Json).membership]));
      assert.equal(members.get('@alice:test.local'), 'join');
      assert.equal(members.get('@luke:test.local'), view === 'all' ? 'invite' : undefined);
    },
  },
  // State at a point the user may not see by history visibility is refused (the departed member of a
  // `joined` room, before they joined).
  members_at_pre: {
    call: (c) => get(`members?at=${c.f.preToken}`)(c),
    ok(res) {
      const members = chunkOf(res).map((e) => e.state_key);
      assert.deepEqual(members, ['@alice:test.local']);
    },
  },
  joined_members: {
    call: get('joined_members'),
    ok(res, _c, view) {
      const joined = Object.keys(res.body.joined as Json);
      assert.ok(joined.includes('@alice:test.local'));
      assert.equal(view, 'all');
    },
  },
  messages_b: {
    call: get('messages?dir=b&limit=100'),
    ok: (res, _c, view) => checkTimeline(chunkOf(res), view),
  },
  messages_f: {
    call: get('messages?dir=f&from=s0&limit=100'),
    ok: (res, _c, view) => checkTimeline(chunkOf(res), view),
  },
  // A `from` beyond the departure is clamped to it.
  messages_from_late: {
    call: (c) => get(`messages?dir=b&limit=100&from=${c.f.lateToken}`)(c),
    ok: (res, _c, view) => checkTimeline(chunkOf(res), view),
  },
  context_early: {
    call: (c) => get(`context/${enc(c.f.early)}?limit=40`)(c),
    ok(res, { f }, view) {
      assert.equal((res.body.event as Json).event_id, f.early);
      assert.equal(ids(chunkOf(res, 'events_after')).includes(f.late), view === 'all');
      const name = chunkOf(res, 'state').find((e) => e.type === 'm.room.name');
      assert.equal((name?.content as Json).name, `${f.tag} initial`);
    },
  },
  context_late: {
    call: (c) => get(`context/${enc(c.f.late)}`)(c),
    ok: (res, { f }) => assert.equal((res.body.event as Json).event_id, f.late),
  },
  event_early: {
    call: (c) => get(`event/${enc(c.f.early)}`)(c),
    ok(res, { f }, view) {
      assert.equal(res.body.event_id, f.early);
      const rel = (res.body.unsigned as Json | undefined)?.['m.relations'] as Json | undefined;
      // The edit made after the departures is bundled only for those who may see it.
      assert.equal(rel?.['m.replace'] !== undefined, view === 'all');
    },
  },
  event_late: {
    call: (c) => get(`event/${enc(c.f.late)}`)(c),
    ok: (res, { f }) => assert.equal(res.body.event_id, f.late),
  },
  relations: {
    call: (c) => getV1(`relations/${enc(c.f.root)}?limit=50`)(c),
    ok(res, { f }, view) {
      const children = ids(chunkOf(res));
      assert.ok(children.includes(f.replyEarly));
      assert.equal(children.includes(f.replyLate), view === 'all');
    },
  },
  threads: {
    call: getV1('threads'),
    ok(res, { f }) {
      // A thread with replies after a member left is still listed for them (as it was when they left).
      assert.deepEqual(ids(chunkOf(res)), [f.root]);
    },
  },
  timestamp_to_event: {
    call: (c) => getV1(`timestamp_to_event?ts=${Date.now() + 60_000}&dir=b`)(c),
    ok(res, { f, who }, view) {
      const found = res.body.event_id as string;
      if (view === 'all') assert.ok(f.lateIds.has(found), 'the newest event of the room');
      else assert.equal(found, f.departures[who], 'the newest event up to the departure');
    },
  },
  hierarchy: {
    call: getV1('hierarchy'),
    summary: true,
    ok: (res, { f }) => assert.equal((chunkOf(res, 'rooms')[0] as Json).room_id, f.roomId),
  },
  aliases: {
    call: get('aliases'),
    ok: (res, { f }) => assert.deepEqual(res.body.aliases, [`#${f.tag}:test.local`]),
  },
  search: {
    viewOf: (_f, who) => searchViewOf(who),
    call: ({ f, user }) =>
      user.post('/_matrix/client/v3/search', {
        search_categories: {
          room_events: {
            search_term: 'marker',
            filter: { rooms: [f.roomId] },
            include_state: true,
            event_context: { before_limit: 2, after_limit: 2 },
          },
        },
      }),
    ok(res, _c, view) {
      const events = (res.body.search_categories as Json).room_events as Json;
      const found = (events.results as Json[]).map((r) => ((r.result as Json).content as Json).body).sort();
      const expected = {
        all: ['marker early', 'marker late'],
        early: ['marker early'],
        none: [],
        unauth: [],
      };
      assert.deepEqual(found, expected[view]);
    },
  },
  receipt: {
    call: ({ f, user }) => user.post(`/_matrix/client/v3/rooms/${f.rid}/receipt/m.read/${enc(f.early)}`, {}),
  },
  read_markers: {
    call: ({ f, user }) =>
      user.post(`/_matrix/client/v3/rooms/${f.rid}/read_markers`, {
        'm.fully_read': f.early,
        'm.read': f.early,
      }),
  },
  typing: {
    call: ({ f, user }) =>
      user.put(`/_matrix/client/v3/rooms/${f.rid}/typing/${enc(user.userId)}`, { typing: false }),
  },
};

/**
 * The expected statuses, one row per endpoint, one column per membership of the room (its `whos`, in order).
 * shared:          joined never invited rejected knocked left kicked banned forgot returned deactivated loggedOut
 * joined / world:  joined never invited left
 */
const MATRIX: Record<Hv, Record<keyof typeof ENDPOINTS, string>> = {
  shared: {
    state: '             200 403 403 403 403 200 200 200 403 200 401 401',
    state_name: '        200 403 403 403 403 200 200 200 403 200 401 401',
    state_secret: '      200 403 403 403 403 404 404 404 403 404 401 401',
    members: '           200 403 403 403 403 200 200 200 403 200 401 401',
    members_at_late: '   200 403 403 403 403 200 200 200 403 200 401 401',
    members_at_pre: '    200 403 403 403 403 200 200 200 403 200 401 401',
    joined_members: '    200 403 403 403 403 403 403 403 403 403 401 401',
    messages_b: '        200 403 403 403 403 200 200 200 403 200 401 401',
    messages_f: '        200 403 403 403 403 200 200 200 403 200 401 401',
    messages_from_late: '200 403 403 403 403 200 200 200 403 200 401 401',
    context_early: '     200 403 403 403 403 200 200 200 403 200 401 401',
    context_late: '      200 403 403 403 403 403 403 403 403 403 401 401',
    event_early: '       200 404 404 404 404 200 200 200 404 200 401 401',
    event_late: '        200 404 404 404 404 404 404 404 404 404 401 401',
    relations: '         200 403 403 403 403 200 200 200 403 200 401 401',
    threads: '           200 403 403 403 403 200 200 200 403 200 401 401',
    timestamp_to_event: '200 403 403 403 403 200 200 200 403 200 401 401',
    hierarchy: '         200 403 200 403 403 403 403 403 403 403 401 401',
    aliases: '           200 403 403 403 403 403 403 403 403 403 401 401',
    search: '            200 200 200 200 200 200 200 200 200 200 401 401',
    receipt: '           200 403 403 403 403 403 403 403 403 403 401 401',
    read_markers: '      200 403 403 403 403 403 403 403 403 403 401 401',
    typing: '            200 403 403 403 403 403 403 403 403 403 401 401',
  },
  joined: {
    state: '             200 403 403 200',
    state_name: '        200 403 403 200',
    state_secret: '      200 403 403 404',
    members: '           200 403 403 200',
    members_at_late: '   200 403 403 200',
    members_at_pre: '    200 403 403 403',
    joined_members: '    200 403 403 403',
    messages_b: '        200 403 403 200',
    messages_f: '        200 403 403 200',
    messages_from_late: '200 403 403 200',
    context_early: '     200 403 403 200',
    context_late: '      200 403 403 403',
    event_early: '       200 404 404 200',
    event_late: '        200 404 404 404',
    relations: '         200 403 403 200',
    threads: '           200 403 403 200',
    timestamp_to_event: '200 403 403 200',
    hierarchy: '         200 403 200 403',
    aliases: '           200 403 403 403',
    search: '            200 200 200 200',
    receipt: '           200 403 403 403',
    read_markers: '      200 403 403 403',
    typing: '            200 403 403 403',
  },
  world_readable: {
    state: '             200 200 200 200',
    state_name: '        200 200 200 200',
    state_secret: '      200 200 200 200',
    members: '           200 200 200 200',
    members_at_late: '   200 200 200 200',
    members_at_pre: '    200 200 200 200',
    joined_members: '    200 200 200 200',
    messages_b: '        200 200 200 200',
    messages_f: '        200 200 200 200',
    messages_from_late: '200 200 200 200',
    context_early: '     200 200 200 200',
    context_late: '      200 200 200 200',
    event_early: '       200 200 200 200',
    event_late: '        200 200 200 200',
    relations: '         200 200 200 200',
    threads: '           200 200 200 200',
    timestamp_to_event: '200 200 200 200',
    hierarchy: '         200 200 200 200',
    aliases: '           200 200 200 200',
    search: '            200 200 200 200',
    receipt: '           200 403 403 403',
    read_markers: '      200 403 403 403',
    typing: '            200 403 403 403',
  },
};

const ROOM_WHOS: Record<Hv, readonly Who[]> = {
  shared: WHOS,
  joined: ['joined', 'never', 'invited', 'left'],
  world_readable: ['joined', 'never', 'invited', 'left'],
};

const ERRCODES: Record<number, string> = { 401: 'M_UNKNOWN_TOKEN', 403: 'M_FORBIDDEN', 404: 'M_NOT_FOUND' };

/** Asserts that none of `strings` occurs in the answer. */
function assertAbsent(res: Response, strings: readonly string[], what: string): void {
  const text = JSON.stringify(res.body);
  for (const s of strings) assert.ok(!text.includes(s), `${what}: leaked ${JSON.stringify(s)} in ${text}`);
}

async function ok(res: Response | Promise<Response>): Promise<Json> {
  const r = await res;
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

for (const engine of ENGINES) {
  describe(`${engine}: authorization matrix of the room endpoints`, () => {
    let server: TestServer;
    const users = {} as Record<Who, User>;
    let luke: User;
    const rooms = {} as Record<Hv, RoomFx>;

    const send = async (roomId: string, content: Json): Promise<string> => {
      const txn = `t${Math.random().toString(36).slice(2)}`;
      const body = await ok(
        users.joined.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${txn}`, content),
      );
      return body.event_id as string;
    };
    const text = (body: string, extra: Json = {}): Json => ({ msgtype: 'm.text', body, ...extra });
    const head = async (roomId: string): Promise<string> =>
      (await ok(users.joined.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=1`)))
        .start as string;

    /** Creates the room, lets the members in, and writes the history they share. */
    async function buildRoom(hv: Hv): Promise<RoomFx> {
      const alice = users.joined;
      const tag = `room-${hv.replace('_', '-')}`;
      const created = await ok(
        alice.post('/_matrix/client/v3/createRoom', {
          preset: 'private_chat',
          name: `${tag} initial`,
          room_alias_name: tag,
          initial_state: [
            { type: 'm.room.history_visibility', content: { history_visibility: hv } },
            { type: 'm.room.join_rules', content: { join_rule: 'knock' } },
          ],
        }),
      );
      const roomId = created.room_id as string;
      const rid = enc(roomId);
      const pre = await send(roomId, text('pre-join message'));
      const preToken = await head(roomId);
      const whos = ROOM_WHOS[hv];
      for (const who of whos) {
        const u = users[who];
        if (who === 'joined' || who === 'never') continue;
        if (who === 'knocked') {
          await ok(u.post(`/_matrix/client/v3/knock/${rid}`, {}));
          continue;
        }
        await ok(alice.post(`/_matrix/client/v3/rooms/${rid}/invite`, { user_id: u.userId }));
        if (who === 'invited') continue;
        if (who === 'rejected') await ok(u.post(`/_matrix/client/v3/rooms/${rid}/leave`, {}));
        else await ok(u.post(`/_matrix/client/v3/rooms/${rid}/join`, {}));
      }
      const early = await send(roomId, text('marker early'));
      const root = await send(roomId, text('thread root'));
      const replyEarly = await send(
        roomId,
        text('reply early', { 'm.relates_to': { rel_type: 'm.thread', event_id: root } }),
      );
      return {
        hv,
        tag,
        roomId,
        rid,
        whos,
        pre,
        early,
        root,
        replyEarly,
        late: '',
        replyLate: '',
        preToken,
        lateToken: '',
        lateIds: new Set(),
        departures: {},
        preStrings: ['pre-join message', pre],
        earlyStrings: ['marker early', 'thread root', 'reply early', early, root, replyEarly],
        lateStrings: [],
      };
    }

    /** The room's history after the departures: messages, an edit, a thread reply, state, an invite. */
    async function finishRoom(f: RoomFx): Promise<void> {
      const alice = users.joined;
      const capToken = await head(f.roomId);
      f.late = await send(f.roomId, text('marker late'));
      f.replyLate = await send(
        f.roomId,
        text('reply late', { 'm.relates_to': { rel_type: 'm.thread', event_id: f.root } }),
      );
      await send(f.roomId, {
        ...text('* edited late'),
        'm.new_content': text('edited late'),
        'm.relates_to': { rel_type: 'm.replace', event_id: f.early },
      });
      const state = `/_matrix/client/v3/rooms/${f.rid}/state`;
      await ok(alice.put(`${state}/m.room.name/`, { name: `${f.tag} renamed late` }));
      await ok(alice.put(`${state}/org.example.secret/`, { note: 'secret late' }));
      await ok(alice.put(`${state}/m.room.join_rules/`, { join_rule: 'invite' }));
      await ok(alice.post(`/_matrix/client/v3/rooms/${f.rid}/invite`, { user_id: luke.userId }));
      f.lateToken = await head(f.roomId);
      const later = await ok(
        alice.get(`/_matrix/client/v3/rooms/${f.rid}/messages?dir=f&from=${capToken}&limit=100`),
      );
      f.lateIds = new Set(ids(later.chunk as Json[]));
      assert.equal(f.lateIds.size, 7);
      f.lateStrings = [
        'marker late',
        'reply late',
        'edited late',
        'renamed late',
        'secret late',
        'org.example.secret',
        luke.userId,
        ...f.lateIds,
      ];
    }

    before(async () => {
      server = await startTestServer(engine);
      for (const who of WHOS) users[who] = await server.user(LOCALPARTS[who]);
      luke = await server.user('luke');
      for (const hv of ['shared', 'joined', 'world_readable'] as const) rooms[hv] = await buildRoom(hv);

      // The departures, in every room the user is in.
      for (const f of Object.values(rooms)) {
        const alice = users.joined;
        const member = `/_matrix/client/v3/rooms/${f.rid}`;
        for (const who of f.whos) {
          const u = users[who];
          if (who === 'left' || who === 'forgot' || who === 'returned')
            await ok(u.post(`${member}/leave`, {}));
          else if (who === 'kicked') await ok(alice.post(`${member}/kick`, { user_id: u.userId }));
          else if (who === 'banned') await ok(alice.post(`${member}/ban`, { user_id: u.userId }));
          else continue;
          const ev = await ok(alice.get(`${member}/state/m.room.member/${enc(u.userId)}?format=event`));
          f.departures[who] = ev.event_id as string;
          if (who === 'forgot') await ok(u.post(`${member}/forget`, {}));
          if (who === 'returned') {
            // Invited back and declining: what they may read still ends at the leave that ended their stay.
            await ok(alice.post(`${member}/invite`, { user_id: u.userId }));
            await ok(u.post(`${member}/leave`, {}));
          }
        }
      }
      // Tokens that no longer authenticate: a deactivated account's, and one logged out.
      const dee = users.deactivated;
      const deactivate = '/_matrix/client/v3/account/deactivate';
      const first = await dee.post(deactivate, {});
      assert.equal(first.status, 401);
      await ok(
        dee.post(deactivate, {
          auth: {
            type: 'm.login.password',
            identifier: { type: 'm.id.user', user: LOCALPARTS.deactivated },
            password: PASSWORD,
            session: first.body.session,
          },
        }),
      );
      await ok(users.loggedOut.post('/_matrix/client/v3/logout', {}));

      for (const f of Object.values(rooms)) await finishRoom(f);
    });
    after(() => server.close());

    for (const hv of ['shared', 'joined', 'world_readable'] as const) {
      for (const [name, endpoint] of Object.entries(ENDPOINTS)) {
        const row = MATRIX[hv][name];
        it(`history_visibility ${hv}: ${name}`, async () => {
          const f = rooms[hv];
          const statuses = (row ?? '').trim().split(/\s+/).map(Number);
          assert.equal(statuses.length, f.whos.length, `row ${name} has a status per membership`);
          for (const [i, who] of f.whos.entries()) {
            const expected = statuses[i] as number;
            const ctx: Ctx = { f, who, user: users[who] };
            const res = await endpoint.call(ctx);
            const what = `${hv} ${name} as ${who}`;
            assert.equal(res.status, expected, `${what}: ${JSON.stringify(res.body)}`);
            if (expected !== 200) {
              const errcode = ERRCODES[expected];
              assert.equal(res.body.errcode, errcode, what);
              if (expected === 401) assert.equal(res.body.soft_logout, false, what);
            }
            const view = (endpoint.viewOf ?? viewOf)(f, who);
            // Nothing from after a departure, nothing at all for a refused user (a summary may name the room).
            if (view !== 'all') {
              const hidden = [...f.lateStrings, ...(f.hv === 'joined' ? f.preStrings : [])];
              if (view === 'none' || view === 'unauth') hidden.push(...f.earlyStrings, ...f.preStrings);
              const shown = endpoint.summary ? hidden.filter((s) => !s.includes('renamed')) : hidden;
              assertAbsent(res, shown, what);
            }
            if (res.status === 200) endpoint.ok?.(res, ctx, view);
          }
        });
      }
    }
  });
}
