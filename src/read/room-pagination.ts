/**
 * Room timeline reads shared by /messages, /context, /state and /members: who may read a room at all, stream
 * pagination with a RoomEventFilter and history visibility applied, state at a point, and client formatting.
 */
import { z } from 'zod';
import { forbidden, invalidParam } from '../api/errors.js';
import type { ClientEvent } from '../rooms/event.js';
import { isValidRoomId } from '../rooms/identifiers.js';
import type { Storage } from '../storage/db.js';
import { stateKey, type StateMapNids } from '../storage/state.js';
import { RoomEventFilterSchema, type RoomEventFilter } from '../sync/filter.js';
import { clientEvent, type EventReader, type LoadedEvent } from './event-reader.js';
import {
  currentMembership,
  findRoom,
  memberEventPositions,
  nidsByEventIds,
  roomPositions,
  txnIdsFor,
  type Dir,
  type Position,
  type RoomRow,
} from './room-queries.js';
import { TIMELINE_START } from './tokens.js';
import { filterVisible, historyVisibilityOf, membershipIn, type VisibilityDeps } from './visibility.js';

export interface ReadDeps {
  reader: EventReader;
  storage: Storage;
}

export const visDeps = (deps: ReadDeps): VisibilityDeps => ({ reader: deps.reader, db: deps.storage.db });

export interface RoomAccess {
  room: RoomRow;
  userId: string;
  /** The user's current membership, if they ever had one. */
  membership: { membership: string; pos: number; nid: number; forgotten: boolean } | undefined;
  worldReadable: boolean;
  /**
   * The last stream position a departed member may read: the event that ended their last stay in the room
   * (their leave, kick or ban). Undefined for joined users and for readers of a world_readable room.
   */
  cap: number | undefined;
  /** The event at `cap`: a departed member sees the room's state just after it. */
  departureNid: number | undefined;
}

/**
 * The event that ended the user's last stay in the room: the first of their membership events after their
 * last join. Undefined when they never joined (an invite rejected or withdrawn, a knock) or are still joined.
 */
async function departureOf(
  deps: ReadDeps,
  roomNid: number,
  userId: string,
): Promise<{ nid: number; pos: number } | undefined> {
  const positions = await memberEventPositions(deps.storage.db, roomNid, userId);
  const events = await deps.reader.byNids(positions.map((p) => p.nid));
  const lastJoin = positions.findLastIndex((p) => membershipIn(events.get(p.nid)?.pdu.content) === 'join');
  return lastJoin < 0 ? undefined : positions[lastJoin + 1];
}

/**
 * The user's access to a room, as Synapse's check_user_in_room_or_world_readable (with departed users allowed):
 * - joined: the current state and the whole timeline;
 * - the room is currently world_readable: the same, read as a non-member (history visibility still decides
 *   every event);
 * - left, kicked or banned after having joined (and not forgotten): reads capped at the event that ended their
 *   stay, state as it was just after it;
 * - anyone else (never joined, invited, knocking, an invite rejected), and unknown rooms: 403. Invited users see
 *   the stripped invite state through /sync only.
 */
export async function roomAccess(deps: ReadDeps, roomId: string, userId: string): Promise<RoomAccess> {
  if (!isValidRoomId(roomId)) throw invalidParam(`Invalid room id: ${roomId}`);
  const denied = forbidden(`User ${userId} not in room ${roomId}, and room previews are disabled`);
  const room = await findRoom(deps.storage.db, roomId);
  if (!room || room.currentSnapshotNid === null) throw denied;
  const membership = await currentMembership(deps.storage.db, room.roomNid, userId);
  const current = await deps.reader.snapshot(room.currentSnapshotNid, { roomId });
  const hvNid = current?.get(stateKey('m.room.history_visibility', ''));
  const hv = hvNid === undefined ? undefined : (await deps.reader.byNids([hvNid])).get(hvNid);
  const worldReadable = historyVisibilityOf(hv?.pdu.content) === 'world_readable';
  const open = { room, userId, membership, worldReadable, cap: undefined, departureNid: undefined };
  if (membership?.membership === 'join' || worldReadable) return open;
  const departed =
    (membership?.membership === 'leave' || membership?.membership === 'ban') && !membership.forgotten;
  const departure = departed ? await departureOf(deps, room.roomNid, userId) : undefined;
  if (!departure) throw denied;
  return { ...open, cap: departure.pos, departureNid: departure.nid };
}

/** The position reads are bounded by: the stream's committed head, or the departed user's cap. */
export function readHead(deps: ReadDeps, access: RoomAccess): number {
  const head = deps.storage.stream.current;
  return access.cap === undefined ? head : Math.min(head, access.cap);
}

// ---- filters ---------------------------------------------------------------------------------------------

/** Parses the `filter` query parameter (a JSON RoomEventFilter); anything malformed is M_INVALID_PARAM. */
export function parseEventFilter(raw: string | undefined): RoomEventFilter | undefined {
  if (raw === undefined || raw === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw invalidParam('filter is not valid JSON');
  }
  const parsed = RoomEventFilterSchema.safeParse(value);
  if (!parsed.success) throw invalidParam(`Invalid filter: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

function glob(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const re = new RegExp(
    '^' +
      pattern
        .split('*')
        .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*') +
      '$',
  );
  return re.test(value);
}

export function matchesFilter(ev: LoadedEvent, f: RoomEventFilter | undefined): boolean {
  if (!f) return true;
  const { type, sender, content } = ev.pdu;
  if (f.not_rooms?.includes(ev.roomId) || (f.rooms && !f.rooms.includes(ev.roomId))) return false;
  if (f.not_types?.some((p) => glob(p, type)) || (f.types && !f.types.some((p) => glob(p, type))))
    return false;
  if (f.not_senders?.includes(sender) || (f.senders && !f.senders.includes(sender))) return false;
  if (f.contains_url !== undefined && (typeof content.url === 'string') !== f.contains_url) return false;
  return true;
}

// ---- pagination ------------------------------------------------------------------------------------------

export interface PageRequest {
  dir: Dir;
  /** Token position: backwards returns events <= from, forwards events > from. */
  from: number;
  to?: number | undefined;
  limit: number;
  filter?: RoomEventFilter | undefined;
}

export interface Page {
  events: LoadedEvent[];
  /** Position for the next page's `from`; undefined when the range is exhausted. */
  next: number | undefined;
}

/** Rows read per request at most, so a page of invisible or filtered-out history cannot scan forever. */
const MAX_SCAN = 5000;

/** Reads positions of candidate events with `after < pos <= upto`, in `dir` order, at most `limit`. */
export type PositionSource = (after: number, upto: number, dir: Dir, limit: number) => Promise<Position[]>;

/**
 * One page of the room's timeline in stream order, filtered and visibility-checked. Reads one event past the
 * limit so that `next` is absent exactly when nothing more is visible in the range.
 */
export function paginateRoom(deps: ReadDeps, access: RoomAccess, req: PageRequest): Promise<Page> {
  const { roomNid } = access.room;
  return paginateWith(deps, access, req, (after, upto, dir, limit) =>
    roomPositions(deps.storage.db, roomNid, after, upto, dir, limit),
  );
}

/** The pagination loop over any position source (the room timeline, an event's relations). */
export async function paginateWith(
  deps: ReadDeps,
  access: RoomAccess,
  req: PageRequest,
  source: PositionSource,
): Promise<Page> {
  if (req.limit <= 0) return { events: [], next: req.from };
  const head = readHead(deps, access);
  const backwards = req.dir === 'b';
  let cursor = backwards ? Math.min(req.from, head) : req.from;
  const bound = backwards ? (req.to ?? TIMELINE_START) : Math.min(req.to ?? head, head);
  const out: LoadedEvent[] = [];
  let scanned = 0;
  for (;;) {
    const batch = Math.min(Math.max(req.limit * 2, 20), 500);
    const rows = backwards
      ? await source(bound, cursor, 'b', batch)
      : await source(cursor, bound, 'f', batch);
    const loaded = await deps.reader.listByNids(rows.map((r) => r.nid));
    const visible = await filterVisible(
      visDeps(deps),
      access.userId,
      loaded.filter((ev) => matchesFilter(ev, req.filter)),
    );
    for (const ev of visible) {
      if (out.length === req.limit) {
        const last = out[out.length - 1] as LoadedEvent;
        const pos = last.streamOrdering as number;
        return { events: out, next: backwards ? pos - 1 : pos };
      }
      out.push(ev);
    }
    scanned += rows.length;
    const lastRow = rows[rows.length - 1];
    if (rows.length < batch || !lastRow) return { events: out, next: undefined };
    cursor = backwards ? lastRow.pos - 1 : lastRow.pos;
    if (scanned >= MAX_SCAN) return { events: out, next: cursor };
  }
}

// ---- state -----------------------------------------------------------------------------------------------

/** The state after `ev` (its snapshot plus itself when it is a state event), or undefined when unreadable. */
export async function stateAfter(
  deps: ReadDeps,
  ev: Pick<LoadedEvent, 'nid' | 'roomId' | 'eventId' | 'stateSnapshotNid'> & {
    type: string;
    stateKey: string | null | undefined;
  },
): Promise<Map<string, LoadedEvent> | undefined> {
  if (ev.stateSnapshotNid === null) return undefined;
  const snap = await deps.reader.snapshot(ev.stateSnapshotNid, { roomId: ev.roomId, eventId: ev.eventId });
  if (!snap) return undefined;
  const map: StateMapNids = new Map(snap);
  if (typeof ev.stateKey === 'string') map.set(stateKey(ev.type, ev.stateKey), ev.nid);
  return deps.reader.stateEvents(map, ev.roomId);
}

export const stateAfterLoaded = (deps: ReadDeps, ev: LoadedEvent) =>
  stateAfter(deps, { ...ev, type: ev.pdu.type, stateKey: ev.pdu.state_key });

/** The state the user may see now: current state, or for a departed user the state just after they left. */
export async function visibleState(deps: ReadDeps, access: RoomAccess): Promise<Map<string, LoadedEvent>> {
  if (access.departureNid !== undefined) {
    const leave = (await deps.reader.byNids([access.departureNid])).get(access.departureNid);
    const state = leave ? await stateAfterLoaded(deps, leave) : undefined;
    return state ?? new Map();
  }
  const snap = access.room.currentSnapshotNid;
  const map = snap === null ? undefined : await deps.reader.snapshot(snap, { roomId: access.room.roomId });
  return map ? deps.reader.stateEvents(map, access.room.roomId) : new Map();
}

/** Member events of `senders` in `state` (lazy-loading members). */
export function memberEventsFor(
  state: ReadonlyMap<string, LoadedEvent>,
  senders: Iterable<string>,
): LoadedEvent[] {
  const out: LoadedEvent[] = [];
  for (const s of new Set(senders)) {
    const ev = state.get(stateKey('m.room.member', s));
    if (ev) out.push(ev);
  }
  return out;
}

// ---- formatting ------------------------------------------------------------------------------------------

export interface Viewer {
  userId: string;
  deviceId: string;
}

/** Client format of `events`: redactions applied with redacted_because, age, and this device's transaction ids. */
/** The redaction events that redacted any of `events`, by event id (for unsigned.redacted_because). */
export async function loadRedactions(
  deps: ReadDeps,
  events: readonly LoadedEvent[],
): Promise<Map<string, LoadedEvent>> {
  const redactionIds = events.flatMap((e) => (e.redactedBy ? [e.redactedBy] : []));
  const redactions = new Map<string, LoadedEvent>();
  if (redactionIds.length === 0) return redactions;
  const nids = await nidsByEventIds(deps.storage.db, redactionIds);
  const loaded = await deps.reader.byNids([...nids.values()]);
  for (const ev of loaded.values()) redactions.set(ev.eventId, ev);
  return redactions;
}

export async function formatEvents(
  deps: ReadDeps,
  events: readonly LoadedEvent[],
  viewer: Viewer,
): Promise<ClientEvent[]> {
  if (events.length === 0) return [];
  const redactions = await loadRedactions(deps, events);
  const txnIds = await txnIdsFor(
    deps.storage.db,
    viewer.userId,
    viewer.deviceId,
    events.map((e) => e.nid),
  );
  const now = Date.now();
  return events.map((ev) => clientEvent(ev, { now, redactions, txnIds }));
}
