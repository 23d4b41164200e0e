/**
 * The deprecated read models that clients and bots written against the pre-r0 API still call (client-server API
 * "Syncing" in older versions, data/api/client-server/old_sync.yaml and room_initial_sync.yaml):
 *
 * - the event stream (GET /events): the user's joined rooms' events and their own membership changes after a
 *   stream token, in stream order, waiting on the same notifier as /sync when there are none;
 * - the snapshots (GET /initialSync, GET /rooms/{roomId}/initialSync): recent messages and state per room;
 * - one event by id (GET /events/{eventId}).
 *
 * Nothing here has its own rules: room access is `roomAccess`, timelines are `paginateRoom`, state is
 * `visibleState`, history visibility is `filterVisible`, formatting is `formatEvents`, as for /messages.
 * Tokens are the `s<position>` stream tokens of /sync and /messages, so an initialSync `end` can be given to
 * /events, /messages or /sync, and a /sync `next_batch` to /events.
 */
import { MatrixError, forbidden, notFound } from '../api/errors.js';
import { PUSH_RULES_TYPE } from '../push/rules-store.js';
import type { ClientEvent, JsonObject } from '../rooms/event.js';
import type { LoadedEvent } from '../read/event-reader.js';
import {
  formatEvents,
  paginateRoom,
  readHead,
  roomAccess,
  visDeps,
  visibleState,
  type ReadDeps,
  type RoomAccess,
  type Viewer,
} from '../read/room-pagination.js';
import { formatStreamToken } from '../read/tokens.js';
import { filterVisible } from '../read/visibility.js';
import { listAccountDataSince } from '../storage/account-data.js';
import { usersSharingRoomWith } from '../storage/presence.js';
import { presenceEventsFor, receiptEventsForRooms } from './ephemeral.js';
import type { Notifier } from './notifier.js';
import { membershipsOf, type MembershipRow } from './queries.js';

export interface LegacyDeps extends ReadDeps {
  notifier: Notifier;
  presenceEnabled: boolean;
}

/** A pagination chunk: events oldest first, `start` before the first, `end` after the last. */
export interface MessagesChunk {
  chunk: ClientEvent[];
  start: string;
  end: string;
}

// ---- the event stream ------------------------------------------------------------------------------------

export interface EventStreamRequest extends Viewer {
  /** Exclusive lower bound (a stream position); undefined means "from now". */
  from: number | undefined;
  timeoutMs: number;
  /** At most this many room events per answer. */
  limit: number;
  /** Only this room (peeking: the user is joined to it, or it is world_readable). */
  roomId?: string | undefined;
}

/** Rows read per answer at most, so a stretch of events the user may not see cannot be scanned forever. */
const MAX_SCAN = 5000;

/** Room ids the user is joined to now. */
async function joinedRoomIds(deps: ReadDeps, userId: string): Promise<string[]> {
  const rows = await deps.storage.db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .select('r.room_id')
    .where('m.user_id', '=', userId)
    .where('m.membership', '=', 'join')
    .execute();
  return rows.map((r) => r.room_id);
}

/**
 * Positions of the events the stream may carry in (after, upTo], oldest first: every event of the rooms the user
 * is joined to (or of `roomNid` only), and the user's own membership events anywhere (an invite to a new room,
 * a kick), at most `limit`.
 */
async function streamPositions(
  deps: ReadDeps,
  userId: string,
  roomNid: number | undefined,
  after: number,
  upTo: number,
  limit: number,
): Promise<{ nid: number; pos: number }[]> {
  if (upTo <= after) return [];
  const db = deps.storage.db;
  let q = db
    .selectFrom('events')
    .select(['event_nid', 'stream_ordering'])
    .where('outlier', '=', 0)
    .where('stream_ordering', '>', after)
    .where('stream_ordering', '<=', upTo);
  q =
    roomNid !== undefined
      ? q.where('room_nid', '=', roomNid)
      : q.where((eb) =>
          eb.or([
            eb(
              'room_nid',
              'in',
              eb
                .selectFrom('room_members')
                .select('room_nid')
                .where('user_id', '=', userId)
                .where('membership', '=', 'join'),
            ),
            eb.and([eb('type', '=', 'm.room.member'), eb('state_key', '=', userId)]),
          ]),
        );
  const rows = await q.orderBy('stream_ordering', 'asc').limit(limit).execute();
  return rows.map((r) => ({ nid: Number(r.event_nid), pos: Number(r.stream_ordering) }));
}

/** Presence events in (after, upTo] of the user and of everyone sharing a joined room with them. */
async function presenceSince(
  deps: LegacyDeps,
  userId: string,
  after: number | null,
  upTo: number,
): Promise<JsonObject[]> {
  if (!deps.presenceEnabled) return [];
  const users = [userId, ...(await usersSharingRoomWith(deps.storage.db, userId))];
  return (await presenceEventsFor(deps.storage.db, users, after, upTo)).map(legacyPresence);
}

/** Presence as the old API sent it: the user id also inside the content (Synapse's `include_user_id`). */
function legacyPresence(e: { type: string; sender: string; content: object }): JsonObject {
  return { type: e.type, sender: e.sender, content: { ...e.content, user_id: e.sender } };
}

/**
 * One answer of the stream from `from` up to `to`: the visible events, then presence up to where the events
 * stopped. `end` is `to`, or the last position read when `limit` (or the scan bound) cut the range short.
 */
async function streamChunk(
  deps: LegacyDeps,
  req: EventStreamRequest,
  roomNid: number | undefined,
  from: number,
  to: number,
): Promise<{ chunk: JsonObject[]; end: number }> {
  const events: LoadedEvent[] = [];
  let cursor = from;
  let scanned = 0;
  let end = to;
  for (;;) {
    const want = Math.min(req.limit - events.length, MAX_SCAN - scanned);
    const rows = await streamPositions(deps, req.userId, roomNid, cursor, to, want);
    scanned += rows.length;
    const loaded = await deps.reader.listByNids(rows.map((r) => r.nid));
    events.push(...(await filterVisible(visDeps(deps), req.userId, loaded)));
    const last = rows[rows.length - 1];
    if (rows.length < want || !last) break;
    cursor = last.pos;
    if (events.length >= req.limit || scanned >= MAX_SCAN) {
      end = cursor;
      break;
    }
  }
  const formatted = (await formatEvents(deps, events, req)) as unknown as JsonObject[];
  const presence = req.roomId === undefined ? await presenceSince(deps, req.userId, from, end) : [];
  return { chunk: [...formatted, ...presence], end };
}

/**
 * GET /events: what happened after `from` (now when absent). An empty answer waits, like an incremental /sync,
 * until the notifier wakes it (a commit in a watched room, or something for the user) or `timeoutMs` passes.
 */
export async function eventStream(deps: LegacyDeps, req: EventStreamRequest): Promise<MessagesChunk> {
  const { storage, notifier } = deps;
  // A token from the future (another database, a restore) counts as "now", as for /sync.
  const from = Math.min(req.from ?? storage.stream.current, storage.stream.current);
  let roomNid: number | undefined;
  if (req.roomId !== undefined) {
    const access = await roomAccess(deps, req.roomId, req.userId);
    if (access.membership?.membership !== 'join' && !access.worldReadable) {
      throw forbidden(`User ${req.userId} is not joined to ${req.roomId}, which is not world_readable`);
    }
    roomNid = access.room.roomNid;
  }
  const deadline = Date.now() + req.timeoutMs;
  const answer = (r: { chunk: JsonObject[]; end: number }): MessagesChunk => ({
    chunk: r.chunk as unknown as ClientEvent[],
    start: formatStreamToken(from),
    end: formatStreamToken(r.end),
  });
  for (;;) {
    const remaining = deadline - Date.now();
    // Watch before reading, so that a commit during the computation still wakes the wait.
    const rooms = req.roomId !== undefined ? [req.roomId] : await joinedRoomIds(deps, req.userId);
    const waiter = remaining > 0 ? notifier.register(req.userId, rooms, remaining) : undefined;
    try {
      const to = storage.stream.current;
      const result = await streamChunk(deps, req, roomNid, from, to);
      // Something to send, a range cut short by the scan bound (the token moves on), or no time to wait.
      if (result.chunk.length > 0 || result.end < to || !waiter) return answer(result);
      // Timed out: the empty answer still moves the token past what the user may not see.
      if (!(await waiter.woken))
        return answer(await streamChunk(deps, req, roomNid, from, storage.stream.current));
    } finally {
      waiter?.cancel();
    }
  }
}

// ---- one event -------------------------------------------------------------------------------------------

/** GET /events/{eventId}: the event when the user may see it (as GET /rooms/{roomId}/event); else 404. */
export async function eventForUser(deps: ReadDeps, viewer: Viewer, eventId: string): Promise<ClientEvent> {
  const ev = await deps.reader.byId(eventId);
  if (!ev || ev.streamOrdering === null) throw notFound('Event not found');
  let access: RoomAccess;
  try {
    access = await roomAccess(deps, ev.roomId, viewer.userId);
  } catch (err) {
    // Whatever the reason, an event the user may not see is "not found" (spec: 404 for both).
    if (err instanceof MatrixError && err.errcode === 'M_FORBIDDEN') throw notFound('Event not found');
    throw err;
  }
  if (ev.streamOrdering > readHead(deps, access)) throw notFound('Event not found');
  const [visible] = await filterVisible(visDeps(deps), viewer.userId, [ev]);
  if (!visible) throw notFound('Event not found');
  return (await formatEvents(deps, [visible], viewer))[0] as ClientEvent;
}

// ---- snapshots -------------------------------------------------------------------------------------------

/**
 * The newest `limit` messages the user may see up to `to` (a departed member: up to their departure), oldest
 * first, and the state they may see (current, or as it was when they left).
 */
async function roomSnapshot(
  deps: ReadDeps,
  access: RoomAccess,
  viewer: Viewer,
  limit: number,
  to: number,
): Promise<{ messages: MessagesChunk; state: ClientEvent[] }> {
  const head = Math.min(to, readHead(deps, access));
  const page = await paginateRoom(deps, access, { dir: 'b', from: head, limit });
  const events = [...page.events].reverse();
  const oldest = events[0]?.streamOrdering;
  const start = page.next ?? (oldest != null ? oldest - 1 : head);
  const state = [...(await visibleState(deps, access)).values()];
  return {
    messages: {
      chunk: await formatEvents(deps, events, viewer),
      start: formatStreamToken(start),
      end: formatStreamToken(head),
    },
    state: await formatEvents(deps, state, viewer),
  };
}

/** The user's account data up to `to`: global (without push rules, served by /pushrules) and per room. */
async function accountData(
  deps: ReadDeps,
  userId: string,
  to: number,
): Promise<{ global: JsonObject[]; rooms: Map<string, JsonObject[]> }> {
  const global: JsonObject[] = [];
  const rooms = new Map<string, JsonObject[]>();
  for (const r of await listAccountDataSince(deps.storage.db, userId, -1, to)) {
    let content: unknown;
    try {
      content = JSON.parse(r.content);
    } catch {
      continue;
    }
    const ev: JsonObject = { type: r.type, content: content as JsonObject };
    if (r.room_id === '') {
      if (r.type !== PUSH_RULES_TYPE) global.push(ev);
    } else {
      const list = rooms.get(r.room_id) ?? [];
      list.push(ev);
      rooms.set(r.room_id, list);
    }
  }
  return { global, rooms };
}

/** m.receipt events (with room_id) of the given joined rooms up to `to`; private receipts only the user's own. */
async function receiptsOf(
  deps: ReadDeps,
  rooms: ReadonlyMap<number, string>,
  userId: string,
  to: number,
): Promise<JsonObject[]> {
  const byRoom = await receiptEventsForRooms(deps.storage.db, rooms, userId, null, to);
  return [...byRoom].map(([roomId, ev]) => ({ ...ev, room_id: roomId }) as unknown as JsonObject);
}

async function publicRoomIds(deps: ReadDeps, roomIds: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < roomIds.length; i += 500) {
    const rows = await deps.storage.db
      .selectFrom('rooms')
      .select('room_id')
      .where('room_id', 'in', roomIds.slice(i, i + 500))
      .where('is_public', '=', 1)
      .execute();
    for (const r of rows) out.add(r.room_id);
  }
  return out;
}

export interface InitialSyncRequest extends Viewer {
  /** Messages per room. */
  limit: number;
  /** Include rooms the user left or was banned from. */
  archived: boolean;
}

/**
 * GET /initialSync: every room the user is joined to or invited to (and left, with `archived`), each with its
 * recent messages and state; global account data, presence and receipts; `end` to continue with /events.
 */
export async function initialSync(deps: LegacyDeps, req: InitialSyncRequest): Promise<JsonObject> {
  const to = deps.storage.stream.current;
  const wanted = new Set(req.archived ? ['join', 'invite', 'leave', 'ban'] : ['join', 'invite']);
  const memberships = (await membershipsOf(deps.storage.db, req.userId)).filter(
    (m) => wanted.has(m.membership) && m.forgotten === 0 && m.stream_ordering <= to,
  );
  const data = await accountData(deps, req.userId, to);
  const publicRooms = await publicRoomIds(
    deps,
    memberships.map((m) => m.room_id),
  );
  const rooms: JsonObject[] = [];
  for (const m of memberships) rooms.push(await roomEntry(deps, req, m, to, publicRooms, data.rooms));
  const joined = new Map(
    memberships.filter((m) => m.membership === 'join').map((m) => [m.room_nid, m.room_id]),
  );
  return {
    end: formatStreamToken(to),
    rooms,
    presence: await presenceSince(deps, req.userId, null, to),
    account_data: data.global,
    receipts: await receiptsOf(deps, joined, req.userId, to),
  };
}

async function roomEntry(
  deps: ReadDeps,
  viewer: Viewer & { limit: number },
  m: MembershipRow,
  to: number,
  publicRooms: ReadonlySet<string>,
  roomData: ReadonlyMap<string, JsonObject[]>,
): Promise<JsonObject> {
  const entry: JsonObject = {
    room_id: m.room_id,
    membership: m.membership,
    visibility: publicRooms.has(m.room_id) ? 'public' : 'private',
  };
  if (m.membership === 'invite') {
    const invite = (await deps.reader.byNids([m.event_nid])).get(m.event_nid);
    if (invite) {
      entry.inviter = invite.pdu.sender;
      entry.invite = (await formatEvents(deps, [invite], viewer))[0] as unknown as JsonObject;
    }
    return entry;
  }
  let access: RoomAccess;
  try {
    access = await roomAccess(deps, m.room_id, viewer.userId);
  } catch (err) {
    // A room the user can no longer read (e.g. departed before ever joining) is listed without contents.
    if (err instanceof MatrixError && err.errcode === 'M_FORBIDDEN') return entry;
    throw err;
  }
  const snapshot = await roomSnapshot(deps, access, viewer, viewer.limit, to);
  entry.messages = snapshot.messages as unknown as JsonObject;
  entry.state = snapshot.state as unknown as JsonObject[];
  entry.account_data = roomData.get(m.room_id) ?? [];
  return entry;
}

export interface RoomInitialSyncRequest extends Viewer {
  roomId: string;
  limit: number;
}

/**
 * GET /rooms/{roomId}/initialSync: one room as /initialSync shows it, for whoever may read the room
 * (`roomAccess`: joined, departed capped at their departure, anyone when world_readable). A reader that is not a
 * member gets no `membership`; a departed member gets no presence or receipts, as Synapse.
 */
export async function roomInitialSync(deps: LegacyDeps, req: RoomInitialSyncRequest): Promise<JsonObject> {
  const to = deps.storage.stream.current;
  const access = await roomAccess(deps, req.roomId, req.userId);
  const snapshot = await roomSnapshot(deps, access, req, req.limit, to);
  const membership = access.membership?.membership;
  const current = access.cap === undefined;
  let presence: JsonObject[] = [];
  if (current && deps.presenceEnabled) {
    const members = snapshot.state
      .filter((e) => e.type === 'm.room.member' && (e.content as JsonObject).membership === 'join')
      .map((e) => e.state_key as string);
    presence = (await presenceEventsFor(deps.storage.db, members, null, to)).map(legacyPresence);
  }
  const receipts = current
    ? await receiptsOf(deps, new Map([[access.room.roomNid, req.roomId]]), req.userId, to)
    : [];
  const data = await accountData(deps, req.userId, to);
  return {
    room_id: req.roomId,
    ...(membership !== undefined ? { membership } : {}),
    messages: snapshot.messages as unknown as JsonObject,
    state: snapshot.state as unknown as JsonObject[],
    presence,
    receipts,
    account_data: data.rooms.get(req.roomId) ?? [],
  };
}
