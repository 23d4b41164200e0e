/**
 * Events this server did not author, persisted by the room writer inside the room's queue. Checks, in Synapse's
 * order: the auth events are known and accepted and authorise the event; the state before it (the state after its
 * single prev event, or the resolution of its prev events' states) authorises it; the room's current state
 * authorises it (else it is soft-failed). Then ONE transaction writes the event row with its JSON, edges and state
 * snapshot; for an accepted event also its stream position, the new forward extremities (old ones minus its prevs,
 * plus itself), the new current state (the state after it, or the resolution of the extremities' states when the
 * graph is forked), memberships and side tables. Rejected and soft-failed events are kept without a stream position
 * (outlier = 1) with their reason or flag, so they never reach a timeline, the current state or the extremities.
 */
import type { Transaction } from 'kysely';
import { authEventTypesFor, checkAuthEvents } from '../rooms/auth/auth-events.js';
import { checkEventAuth, redactionAllowed } from '../rooms/auth/check.js';
import type { StateLookup } from '../rooms/auth/types.js';
import { canonicalJson } from '../rooms/canonical-json.js';
import { createEventIdFromRoomId, redactsOf, roomIdOf, type Pdu } from '../rooms/event.js';
import type { RoomVersion } from '../rooms/room-versions.js';
import { getEventRowById, insertEvent } from '../storage/events.js';
import type { Database } from '../storage/schema.js';
import { insertSnapshot, MAX_CHAIN, stateKey, type StateMapNids } from '../storage/state.js';
import type { Executor } from '../storage/users.js';
import type { RoomHead } from './room-head.js';
import {
  eventsById,
  eventsByNid,
  forRules,
  lookupState,
  resolveStates,
  sameState,
  stateAfter,
  type StoredEvent,
} from './state-at.js';

/** An event another server authored, already checked for format, signatures and hashes. */
export interface RemoteEvent {
  eventId: string;
  /** The wire form, as stored (redacted when its content hash did not match). */
  raw: Pdu;
  /**
   * States after prev events this server has only as outliers (the gap filled through /state_ids): prev event id →
   * `type\0state_key` → event nid.
   */
  prevStates?: ReadonlyMap<string, StateMapNids>;
}

export type RemoteStatus = 'accepted' | 'soft_failed' | 'rejected' | 'duplicate';

export interface RemoteOutcome {
  status: RemoteStatus;
  reason?: string;
}

/** Events the writer needs before it can check an event: fetch them, then try again. */
export class MissingEventsError extends Error {
  constructor(
    readonly kind: 'auth_events' | 'prev_state',
    readonly eventIds: string[],
  ) {
    super(
      `missing ${kind === 'auth_events' ? 'auth events' : 'state at prev events'}: ${eventIds.join(', ')}`,
    );
    this.name = 'MissingEventsError';
  }
}

/** The decision for one event and what its transaction needs. */
export interface RemotePlan {
  event: RemoteEvent;
  pdu: Pdu;
  status: Exclude<RemoteStatus, 'duplicate'>;
  reason?: string;
  /** A stored outlier row of this event that is now given its state. */
  outlierNid?: number;
  stateBefore: StateMapNids;
  /** A stored snapshot equal to `stateBefore`, with its chain length, when one is known. */
  beforeSnapshot?: { nid: number; chainLen: number };
  /** The only prev event is the room's only forward extremity (the linear case). */
  linear: boolean;
  /** For a redaction: whether it may redact its target now. */
  redactionApplies: boolean;
}

type Identified = (p: Pdu) => string;

function identify(events: Iterable<{ eventId: string; pdu: Pdu }>): Identified {
  const ids = new Map<Pdu, string>();
  for (const e of events) ids.set(e.pdu, e.eventId);
  return (p) => ids.get(p) ?? '';
}

/** An auth event as the checks read it. */
export interface AuthInput {
  eventId: string;
  pdu: Pdu;
  rejected: boolean;
}

const asAuthInput = (e: StoredEvent): AuthInput => ({
  eventId: e.eventId,
  pdu: e.pdu,
  rejected: e.row.rejected_reason !== null,
});

/** Why the auth events of `pdu` do not authorise it, or undefined when they do. */
export function checkAgainstAuthEvents(
  pdu: Pdu,
  auth: readonly AuthInput[],
  version: RoomVersion,
  create: AuthInput | undefined,
): string | undefined {
  for (const a of auth) if (a.rejected) return `auth event ${a.eventId} was rejected`;
  const listed = checkAuthEvents(
    pdu,
    auth.map((a) => a.pdu),
    version,
  );
  if (!listed.allowed) return listed.reason;
  const byKey = new Map<string, Pdu>();
  for (const a of auth)
    if (typeof a.pdu.state_key === 'string') byKey.set(stateKey(a.pdu.type, a.pdu.state_key), a.pdu);
  if (create && !byKey.has(stateKey('m.room.create', '')))
    byKey.set(stateKey('m.room.create', ''), create.pdu);
  const lookup: StateLookup = (t, k) => byKey.get(stateKey(t, k));
  const all = create ? [...auth, create] : auth;
  const result = checkEventAuth(pdu, lookup, version, { eventIdOf: identify(all) });
  return result.allowed ? undefined : result.reason;
}

/** The create event of a room version 12 room (not cited in auth_events), else undefined. */
async function createEventOf(
  db: Executor,
  head: RoomHead,
  pdu: Pdu,
  version: RoomVersion,
): Promise<StoredEvent | undefined> {
  if (version.createEventInAuthEvents || pdu.room_id === undefined) return undefined;
  const id = createEventIdFromRoomId(pdu.room_id);
  return (await eventsById(db, head.roomNid, [id], version)).get(id);
}

/**
 * Decides what happens to `ev` (reads only; run inside the room queue). Throws MissingEventsError when its auth
 * events or the state at one of its prev events are unknown.
 */
export async function planRemoteEvent(
  db: Executor,
  head: RoomHead,
  ev: RemoteEvent,
): Promise<RemotePlan | { status: 'duplicate'; reason?: string }> {
  const version = head.version;
  const pdu = forRules(ev.raw, version);
  // An event naming another room never enters this one (its rows would sit under this room's nid).
  const named = roomIdOf(pdu, ev.eventId);
  if (named !== head.roomId) throw new Error(`Event ${ev.eventId} is in room ${named}, not ${head.roomId}`);
  const existing = await getEventRowById(db, ev.eventId);
  let outlierNid: number | undefined;
  if (existing) {
    const plainOutlier =
      existing.outlier === 1 && existing.state_snapshot_nid === null && existing.rejected_reason === null;
    if (!plainOutlier || Number(existing.room_nid) !== head.roomNid)
      return existing.rejected_reason !== null
        ? { status: 'duplicate', reason: existing.rejected_reason }
        : { status: 'duplicate' };
    outlierNid = Number(existing.event_nid);
  }
  if (pdu.prev_events.length === 0)
    throw new Error('An event other than the create event must have prev_events');

  const auth = await eventsById(db, head.roomNid, pdu.auth_events, version);
  const missingAuth = pdu.auth_events.filter((id) => !auth.has(id));
  if (missingAuth.length) throw new MissingEventsError('auth_events', missingAuth);
  const create = await createEventOf(db, head, pdu, version);

  const headState: StateMapNids = new Map([...head.state].map(([k, e]) => [k, e.eventNid]));
  const onlyPrev = pdu.prev_events.length === 1 ? pdu.prev_events[0] : undefined;
  const linear =
    onlyPrev !== undefined && head.extremities.length === 1 && head.extremities[0]?.eventId === onlyPrev;
  let stateBefore: StateMapNids;
  let beforeSnapshot: RemotePlan['beforeSnapshot'];
  if (linear) {
    stateBefore = headState;
    beforeSnapshot = head.snapshot;
  } else {
    const prevs = await eventsById(db, head.roomNid, pdu.prev_events, version);
    const states: StateMapNids[] = [];
    const missing: string[] = [];
    for (const id of pdu.prev_events) {
      const given = ev.prevStates?.get(id);
      const prev = prevs.get(id);
      const s = given ?? (prev ? await stateAfter(db, prev) : undefined);
      if (s) states.push(s);
      else missing.push(id);
    }
    if (missing.length) throw new MissingEventsError('prev_state', missing);
    stateBefore = await resolveStates(db, head.roomNid, version, states);
    const single = onlyPrev !== undefined ? prevs.get(onlyPrev) : undefined;
    // A message (or rejected event) as the only prev: the state before it is the state before this one.
    if (
      single &&
      !ev.prevStates?.has(single.eventId) &&
      single.row.state_snapshot_nid !== null &&
      (typeof single.pdu.state_key !== 'string' || single.row.rejected_reason !== null)
    ) {
      beforeSnapshot = await snapshotRef(db, Number(single.row.state_snapshot_nid));
    }
  }

  const plan = (status: RemotePlan['status'], reason?: string): RemotePlan => ({
    event: ev,
    pdu,
    status,
    ...(reason !== undefined ? { reason } : {}),
    ...(outlierNid !== undefined ? { outlierNid } : {}),
    stateBefore,
    ...(beforeSnapshot ? { beforeSnapshot } : {}),
    linear,
    redactionApplies: false,
  });

  const authFailure = checkAgainstAuthEvents(
    pdu,
    [...auth.values()].map(asAuthInput),
    version,
    create && asAuthInput(create),
  );
  if (authFailure) return plan('rejected', `not allowed by its auth events: ${authFailure}`);

  const needed = new Set([stateKey('m.room.create', '')]);
  for (const [t, k] of authEventTypesFor(pdu, version)) needed.add(stateKey(t, k));
  const beforeEvents = await eventsByNid(
    db,
    [...needed].map((k) => stateBefore.get(k)).filter((n): n is number => n !== undefined),
    version,
  );
  const atBefore = checkEventAuth(pdu, lookupState(stateBefore, beforeEvents), version, {
    eventIdOf: identify(beforeEvents.values()),
  });
  if (!atBefore.allowed) return plan('rejected', `not allowed by the state before it: ${atBefore.reason}`);

  const currentPdus = new Map([...head.state.values()].map((e) => [forRules(e.pdu, version), e.eventId]));
  const currentByKey = new Map([...currentPdus.keys()].map((p) => [stateKey(p.type, p.state_key ?? ''), p]));
  const atCurrent = checkEventAuth(pdu, (t, k) => currentByKey.get(stateKey(t, k)), version, {
    eventIdOf: (p) => currentPdus.get(p) ?? '',
  });
  if (!atCurrent.allowed) return plan('soft_failed', `not allowed by the current state: ${atCurrent.reason}`);

  const accepted = plan('accepted');
  if (pdu.type === 'm.room.redaction') {
    const target = redactsOf(pdu, version);
    const found = target ? (await eventsById(db, head.roomNid, [target], version)).get(target) : undefined;
    accepted.redactionApplies =
      found !== undefined &&
      redactionAllowed(pdu, found.pdu, (t, k) => currentByKey.get(stateKey(t, k)), version);
  }
  return accepted;
}

async function snapshotRef(db: Executor, nid: number): Promise<{ nid: number; chainLen: number }> {
  const row = await db
    .selectFrom('state_snapshots')
    .select('chain_len')
    .where('snapshot_nid', '=', nid)
    .executeTakeFirst();
  return { nid, chainLen: Number(row?.chain_len ?? MAX_CHAIN) };
}

/**
 * A snapshot holding `target`: `base` itself when equal, a delta over `base` when `target` only adds or replaces
 * entries and the chain has room, else a full snapshot.
 */
export async function snapshotOf(
  trx: Transaction<Database>,
  roomNid: number,
  target: StateMapNids,
  base?: { nid: number; chainLen: number; map: StateMapNids },
): Promise<{ nid: number; chainLen: number }> {
  if (base && sameState(base.map, target)) return { nid: base.nid, chainLen: base.chainLen };
  if (base && base.chainLen + 1 <= MAX_CHAIN && [...base.map.keys()].every((k) => target.has(k))) {
    const delta = new Map([...target].filter(([k, v]) => base.map.get(k) !== v));
    return insertSnapshot(trx, roomNid, base, delta);
  }
  return insertSnapshot(trx, roomNid, null, target);
}

/** What the transaction of an accepted event produced. */
export interface WrittenRemote {
  eventNid: number;
  streamOrdering: number | null;
  /** For an accepted event: the room's current snapshot after it. */
  snapshot?: { nid: number; chainLen: number };
}

/**
 * Writes a planned event in the caller's transaction: its row (or the upgrade of its outlier row), and for an
 * accepted event the extremities, current state, memberships and current snapshot of the room.
 */
export async function writeRemoteEvent(
  trx: Transaction<Database>,
  head: RoomHead,
  plan: RemotePlan,
  position: number | null,
): Promise<WrittenRemote> {
  const { pdu, event } = plan;
  const roomNid = head.roomNid;
  const version = head.version;
  const beforeBase = plan.beforeSnapshot ? { ...plan.beforeSnapshot, map: plan.stateBefore } : undefined;
  const before = await snapshotOf(trx, roomNid, plan.stateBefore, beforeBase);
  const accepted = plan.status === 'accepted';
  const fields = {
    streamOrdering: accepted ? position : null,
    stateSnapshotNid: before.nid,
    outlier: !accepted,
    rejectedReason: plan.status === 'rejected' ? (plan.reason ?? 'rejected') : null,
    softFailed: plan.status === 'soft_failed',
  };
  let eventNid: number;
  if (plan.outlierNid !== undefined) {
    eventNid = plan.outlierNid;
    await trx
      .updateTable('events')
      .set({
        stream_ordering: fields.streamOrdering,
        state_snapshot_nid: fields.stateSnapshotNid,
        outlier: fields.outlier ? 1 : 0,
        rejected_reason: fields.rejectedReason,
        soft_failed: fields.softFailed ? 1 : 0,
      })
      .where('event_nid', '=', eventNid)
      .execute();
  } else {
    eventNid = await insertEvent(
      trx,
      {
        eventId: event.eventId,
        roomNid,
        type: pdu.type,
        stateKey: pdu.state_key ?? null,
        sender: pdu.sender,
        depth: pdu.depth,
        originServerTs: pdu.origin_server_ts,
        json: canonicalJson(event.raw),
        containsUrl: typeof pdu.content.url === 'string',
        ...fields,
      },
      pdu.prev_events,
      pdu.auth_events,
    );
  }
  if (!accepted) return { eventNid, streamOrdering: null };

  let after = before;
  const afterMap = new Map(plan.stateBefore);
  if (typeof pdu.state_key === 'string') {
    afterMap.set(stateKey(pdu.type, pdu.state_key), eventNid);
    after = await snapshotOf(trx, roomNid, afterMap, { ...before, map: plan.stateBefore });
  }

  const prevs = new Set(pdu.prev_events);
  const kept = head.extremities.filter((x) => !prevs.has(x.eventId));
  let current = afterMap;
  let currentSnap = after;
  if (kept.length > 0) {
    const others = await eventsByNid(
      trx,
      kept.map((k) => k.eventNid),
      version,
    );
    const states: StateMapNids[] = [afterMap];
    for (const o of others.values()) {
      const s = await stateAfter(trx, o);
      if (s) states.push(s);
    }
    current = await resolveStates(trx, roomNid, version, states);
    currentSnap = await snapshotOf(trx, roomNid, current, { ...after, map: afterMap });
  }
  let drop = trx.deleteFrom('forward_extremities').where('room_nid', '=', roomNid);
  if (kept.length)
    drop = drop.where(
      'event_nid',
      'not in',
      kept.map((k) => k.eventNid),
    );
  await drop.execute();
  await trx.insertInto('forward_extremities').values({ room_nid: roomNid, event_nid: eventNid }).execute();
  const old: StateMapNids = new Map([...head.state].map(([k, e]) => [k, e.eventNid]));
  await writeCurrentState(trx, roomNid, version, old, current);
  await trx
    .updateTable('rooms')
    .set({ current_snapshot_nid: currentSnap.nid })
    .where('room_nid', '=', roomNid)
    .execute();
  return { eventNid, streamOrdering: position, snapshot: currentSnap };
}

/** Replaces the rows of `current_state` and `room_members` that differ between `old` and `next`. */
export async function writeCurrentState(
  trx: Transaction<Database>,
  roomNid: number,
  version: RoomVersion,
  old: StateMapNids,
  next: StateMapNids,
): Promise<void> {
  const changed = [...next].filter(([k, v]) => old.get(k) !== v);
  const removed = [...old.keys()].filter((k) => !next.has(k));
  const events = await eventsByNid(
    trx,
    changed.map(([, v]) => v),
    version,
  );
  for (const [k, nid] of changed) {
    const ev = events.get(nid);
    const [type, key] = [k.slice(0, k.indexOf('\u0000')), k.slice(k.indexOf('\u0000') + 1)];
    await trx
      .insertInto('current_state')
      .values({ room_nid: roomNid, type, state_key: key, event_nid: nid })
      .onConflict((oc) => oc.columns(['room_nid', 'type', 'state_key']).doUpdateSet({ event_nid: nid }))
      .execute();
    if (type !== 'm.room.member') continue;
    const membership = typeof ev?.pdu.content.membership === 'string' ? ev.pdu.content.membership : 'leave';
    const pos = ev?.row.stream_ordering === null || ev === undefined ? 0 : Number(ev.row.stream_ordering);
    await trx
      .insertInto('room_members')
      .values({
        room_nid: roomNid,
        user_id: key,
        membership,
        event_nid: nid,
        stream_ordering: pos,
        forgotten: 0,
      })
      .onConflict((oc) =>
        oc
          .columns(['room_nid', 'user_id'])
          .doUpdateSet({ membership, event_nid: nid, stream_ordering: pos, forgotten: 0 }),
      )
      .execute();
  }
  for (const k of removed) {
    const [type, key] = [k.slice(0, k.indexOf('\u0000')), k.slice(k.indexOf('\u0000') + 1)];
    await trx
      .deleteFrom('current_state')
      .where('room_nid', '=', roomNid)
      .where('type', '=', type)
      .where('state_key', '=', key)
      .execute();
    if (type === 'm.room.member')
      await trx
        .deleteFrom('room_members')
        .where('room_nid', '=', roomNid)
        .where('user_id', '=', key)
        .execute();
  }
}

/** An outlier to store: an event known only as an auth or state event (no state, no stream position). */
export interface OutlierEvent {
  eventId: string;
  raw: Pdu;
  rejectedReason?: string | undefined;
}

/** Stores outliers not stored yet; returns event id → nid of every given event. */
export async function writeOutliers(
  trx: Transaction<Database>,
  roomNid: number,
  version: RoomVersion,
  events: readonly OutlierEvent[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const ids = events.map((e) => e.eventId);
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await trx
      .selectFrom('events')
      .select(['event_id', 'event_nid'])
      .where('event_id', 'in', ids.slice(i, i + 500))
      .execute();
    for (const r of rows) out.set(r.event_id, Number(r.event_nid));
  }
  for (const e of events) {
    if (out.has(e.eventId)) continue;
    const pdu = forRules(e.raw, version);
    const nid = await insertEvent(
      trx,
      {
        eventId: e.eventId,
        roomNid,
        type: pdu.type,
        stateKey: pdu.state_key ?? null,
        sender: pdu.sender,
        depth: pdu.depth,
        originServerTs: pdu.origin_server_ts,
        streamOrdering: null,
        json: canonicalJson(e.raw),
        stateSnapshotNid: null,
        containsUrl: typeof pdu.content.url === 'string',
        outlier: true,
        rejectedReason: e.rejectedReason ?? null,
      },
      pdu.prev_events,
      pdu.auth_events,
    );
    out.set(e.eventId, nid);
  }
  return out;
}
