/** The `rooms.join` (and `rooms.leave`) section of one room: timeline, state, summary. */
import type { JsonObject } from '../rooms/event.js';
import type { LoadedEvent } from '../read/event-reader.js';
import { formatStreamToken } from '../read/tokens.js';
import { timelinesOf, type TimelineRows } from '../storage/sliding-sync.js';
import { splitStateKey, type StateMapNids } from '../storage/state.js';
import { eventAllowed, timelineLimit, type PrefetchedTimelines, type SyncContext } from './context.js';
import type { RoomEventFilter } from './filter.js';
import { formatEvents } from './format.js';
import { txnIdsFor } from '../read/room-queries.js';
import { memberCounts, memberCountsOfRooms, timelineNids, type MembershipRow } from './queries.js';
import { stateAtPosition, stateBefore, stateDelta } from './room-state.js';

export interface RoomTimelineSection {
  timeline: { events: JsonObject[]; limited: boolean; prev_batch: string };
  state?: { events: JsonObject[] };
  state_after?: { events: JsonObject[] };
  summary?: JsonObject;
  /** True when nothing in the timeline or state changed (the room may still carry ephemeral data). */
  empty: boolean;
}

/**
 * Builds timeline and state for a room between ctx.since and `upTo` (the leave event for a left room).
 * `full` asks for the complete state at the start of the timeline (initial sync, full_state, newly joined).
 */
export async function roomTimelineSection(
  ctx: SyncContext,
  m: MembershipRow,
  upTo: number,
  full: boolean,
  visible: (events: LoadedEvent[]) => Promise<LoadedEvent[]>,
): Promise<RoomTimelineSection> {
  return (await buildRoomSection(ctx, m, upTo, full, visible, false)).section;
}

/** A room section with what a caller sharing it among users needs to adapt it to each of them. */
export interface BuiltRoomSection {
  section: RoomTimelineSection;
  /** The timeline events, as loaded (after `visible`). */
  loaded: LoadedEvent[];
  /** Whether a membership event is in the timeline or state (the summary is then due). */
  membershipChanged: boolean;
}

/**
 * The work of {@link roomTimelineSection}. `shared` leaves out what depends on the syncing user (transaction ids,
 * the summary); the caller adds them per user.
 */
export async function buildRoomSection(
  ctx: SyncContext,
  m: Pick<MembershipRow, 'room_nid' | 'room_id'>,
  upTo: number,
  full: boolean,
  visible: (events: LoadedEvent[]) => Promise<LoadedEvent[]>,
  shared: boolean,
): Promise<BuiltRoomSection> {
  const { storage, reader, filter } = ctx;
  const after = full && ctx.since === null ? null : ctx.since;
  const limit = timelineLimit(filter);
  const pre = ctx.prefetched?.rooms.get(m.room_nid);
  const prefetched =
    pre !== undefined && pre.after === after && pre.upTo === upTo ? ctx.prefetched : undefined;
  const tl =
    prefetched && pre
      ? pre.rows
      : await timelineNids(storage.db, m.room_nid, after, upTo, limit, filter.room?.timeline);
  const loaded = await visible(await reader.listByNids(tl.nids));
  const first = loaded[0];
  const prevPos = first?.streamOrdering != null ? first.streamOrdering - 1 : (tl.streams[0] ?? upTo + 1) - 1;

  let startState: StateMapNids;
  if (first) startState = await stateBefore(reader, first);
  else startState = await stateAtPosition(storage, reader, m.room_nid, m.room_id, upTo);

  let stateMap: StateMapNids;
  if (full || ctx.since === null) stateMap = startState;
  else if (tl.limited || timelineFiltered(filter.room?.timeline)) {
    // A gap, or state events the timeline filter hid: the client learns those changes only from `state`.
    const sinceState = await stateAtPosition(storage, reader, m.room_nid, m.room_id, ctx.since);
    stateMap = stateDelta(sinceState, startState);
  } else stateMap = new Map();

  const timelineEvents = loaded;
  const stateEvents = await selectState(ctx, stateMap, startState, timelineEvents, m.room_id);
  // Only the user's own events can carry their transaction ids: most timelines need no lookup.
  const own = shared ? [] : timelineEvents.filter((e) => e.pdu.sender === ctx.userId).map((e) => e.nid);
  const txnIds = shared
    ? new Map<number, string>()
    : prefetched
      ? prefetched.txnIds
      : own.length
        ? await txnIdsFor(storage.db, ctx.userId, ctx.deviceId, own)
        : new Map<number, string>();
  const fmt = {
    format: filter.event_format ?? 'client',
    eventFields: filter.event_fields,
    omitRoomId: true,
  } as const;

  // Bundled aggregations are added by the caller, once for all rooms of the response.
  const formatted = await formatEvents({ storage, reader }, timelineEvents, { ...fmt, txnIds });
  const section: RoomTimelineSection = {
    timeline: {
      events: formatted,
      limited: tl.limited,
      prev_batch: formatStreamToken(prevPos),
    },
    // With `timeline.limit: 0` new events show only as `limited`: the room is not empty then.
    empty: timelineEvents.length === 0 && stateEvents.length === 0 && !full && !(limit === 0 && tl.limited),
  };
  const formattedState = await formatEvents({ storage, reader }, stateEvents, fmt);
  if (ctx.useStateAfter) {
    const endState = await stateAtPosition(storage, reader, m.room_nid, m.room_id, upTo);
    const base =
      full || ctx.since === null
        ? new Map()
        : await stateAtPosition(storage, reader, m.room_nid, m.room_id, ctx.since);
    const afterEvents = await selectState(
      ctx,
      stateDelta(base, endState),
      endState,
      timelineEvents,
      m.room_id,
    );
    section.state_after = { events: await formatEvents({ storage, reader }, afterEvents, fmt) };
  } else {
    section.state = { events: formattedState };
  }
  const membershipChanged =
    timelineEvents.some((e) => e.pdu.type === 'm.room.member') ||
    stateEvents.some((e) => e.pdu.type === 'm.room.member');
  if (!shared && (full || membershipChanged)) section.summary = await summary(ctx, m.room_nid);
  return { section, loaded: timelineEvents, membershipChanged };
}

/** Transaction ids asked for in one statement: bounded by the engines' parameter limits. */
const TXN_ID_CHUNK = 1_000;

/**
 * Reads the timelines of `rooms` (between ctx.since and `upTo`, the filter's limit) in one statement per 100 rooms,
 * and the syncing device's transaction ids among their events, instead of two statements per room. Undefined when
 * a timeline filter narrows the events (each room is then read on its own) or there are too few rooms to gain.
 */
export async function prefetchTimelines(
  ctx: SyncContext,
  rooms: readonly Pick<MembershipRow, 'room_nid'>[],
  upTo: number,
): Promise<PrefetchedTimelines | undefined> {
  if (rooms.length < 2 || timelineFiltered(ctx.filter.room?.timeline)) return undefined;
  const after = ctx.since;
  const limit = timelineLimit(ctx.filter);
  const rows = await timelinesOf(
    ctx.storage.db,
    rooms.map((m) => ({ roomNid: m.room_nid, after, upTo, limit })),
  );
  const nids = [...rows.values()].flatMap((r) => r.nids);
  const txnIds = new Map<number, string>();
  for (let i = 0; i < nids.length; i += TXN_ID_CHUNK) {
    const found = await txnIdsFor(ctx.storage.db, ctx.userId, ctx.deviceId, nids.slice(i, i + TXN_ID_CHUNK));
    for (const [nid, txn] of found) txnIds.set(nid, txn);
  }
  const byRoom = new Map<number, { after: number | null; upTo: number; rows: TimelineRows }>();
  for (const [roomNid, r] of rows) byRoom.set(roomNid, { after, upTo, rows: r });
  await readAhead(ctx, rooms, [...rows.values()]);
  return { rooms: byRoom, txnIds };
}

/** Events read ahead at most (the reader's event cache holds 50,000): past it each room reads its own. */
const READ_AHEAD_EVENTS = 20_000;
const MEMBER_PREFIX = 'm.room.member\u0000';

/**
 * Fills the reader's caches with what the rooms' sections then read, a few statements for all rooms instead of
 * several per room: the timeline events, the state at each timeline's start, the state events the response sends
 * (with lazy-loaded members, only the senders' and the user's own) and the summaries' members. Only a hint: what
 * is not read here (a damaged snapshot, a room past the bound) is read by the section itself.
 */
async function readAhead(
  ctx: SyncContext,
  rooms: readonly Pick<MembershipRow, 'room_nid'>[],
  timelines: readonly TimelineRows[],
): Promise<void> {
  const { reader } = ctx;
  const nids = timelines.flatMap((r) => r.nids);
  if (nids.length > READ_AHEAD_EVENTS) return;
  const events = await reader.byNids(nids);
  const starts = timelines.map((r) => (r.nids[0] === undefined ? undefined : events.get(r.nids[0])));
  await reader.warmSnapshots(
    starts.flatMap((ev) => (ev?.stateSnapshotNid == null ? [] : [ev.stateSnapshotNid])),
  );
  const lazy = ctx.filter.room?.state?.lazy_load_members === true;
  const stateNids: number[] = [];
  timelines.forEach((r, i) => {
    const snapshot = starts[i]?.stateSnapshotNid;
    const map = snapshot == null ? undefined : reader.snapshots.get(snapshot);
    if (!map) return;
    const senders = new Set([ctx.userId, ...r.nids.map((nid) => events.get(nid)?.pdu.sender)]);
    for (const [k, nid] of map)
      if (!lazy || !k.startsWith(MEMBER_PREFIX) || senders.has(k.slice(MEMBER_PREFIX.length)))
        stateNids.push(nid);
  });
  if (nids.length + stateNids.length <= READ_AHEAD_EVENTS) await reader.byNids(stateNids);
  await memberCountsOfRooms(
    ctx.storage.db,
    rooms.map((m) => m.room_nid),
  );
}

/** Applies the state filter and lazy-loading of members to a state map, loading the events. */
async function selectState(
  ctx: SyncContext,
  map: StateMapNids,
  fullStart: StateMapNids,
  timeline: LoadedEvent[],
  roomId: string,
): Promise<LoadedEvent[]> {
  const sf = ctx.filter.room?.state;
  const lazy = sf?.lazy_load_members === true;
  const wanted = new Map<string, number>();
  for (const [k, nid] of map) {
    const [type] = splitStateKey(k);
    if (lazy && type === 'm.room.member') continue;
    wanted.set(k, nid);
  }
  if (lazy) {
    const senders = new Set(timeline.map((e) => e.pdu.sender));
    // Senders' memberships are always sent: nothing records which ones this client already has, and a sender
    // first seen in an incremental sync must not come without one. The user's own only when asked or initial.
    const redundant = sf?.include_redundant_members === true || ctx.since === null;
    for (const s of new Set([...senders, ctx.userId])) {
      const k = `m.room.member\u0000${s}`;
      const nid = map.get(k) ?? (redundant || senders.has(s) ? fullStart.get(k) : undefined);
      if (nid !== undefined && !timeline.some((e) => e.nid === nid)) wanted.set(k, nid);
    }
  }
  const events = await ctx.reader.stateEvents(wanted, roomId);
  const out: LoadedEvent[] = [];
  for (const ev of events.values()) {
    if (!eventAllowed(sf, ev.pdu.type, ev.pdu.sender)) continue;
    out.push(ev);
  }
  return out;
}

/** Whether a timeline filter can hide events (and with them state changes) from the timeline. */
function timelineFiltered(f: RoomEventFilter | undefined): boolean {
  return (
    f !== undefined &&
    (f.types !== undefined ||
      (f.not_types?.length ?? 0) > 0 ||
      f.senders !== undefined ||
      (f.not_senders?.length ?? 0) > 0 ||
      f.contains_url !== undefined)
  );
}

export async function summary(ctx: SyncContext, roomNid: number): Promise<JsonObject> {
  const c = await memberCounts(ctx.storage.db, roomNid);
  return {
    'm.heroes': c.heroes.filter((u) => u !== ctx.userId).slice(0, 5),
    'm.joined_member_count': c.joined,
    'm.invited_member_count': c.invited,
  };
}
