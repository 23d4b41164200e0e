/**
 * The writer side of backfill: a batch of older events fetched with /backfill (already checked for format,
 * signatures and hashes) persisted as HISTORICAL events in the caller's one transaction, inside the room's queue.
 *
 * Per event, oldest first: the state before it is the state after its prev events (earlier events of the batch,
 * stored timeline events, or states fetched with /state_ids for prev events this server lacks), resolved when there
 * are several; it is checked against its auth events and that state (not against the current state: old events are
 * not soft-failed). An accepted event gets a negative backfill position (lower for older events) and its snapshot; a
 * plain outlier (from a join's state or auth chain) is promoted in place instead of stored twice. A rejected event
 * is stored as a rejected outlier. A redaction stored before the event it redacts (it is newer, so it came in an
 * earlier batch or live) is applied to it when it arrives, if the state before the redaction allows it. Nothing here
 * touches the current state, forward extremities, memberships (other than the position of a promoted member event),
 * the stream counter or the commit listeners: history never reaches /sync, push or the outbound queue as new.
 */
import type { Transaction } from 'kysely';
import { authEventTypesFor } from '../rooms/auth/auth-events.js';
import { checkEventAuth, redactionAllowed } from '../rooms/auth/check.js';
import { canonicalJson } from '../rooms/canonical-json.js';
import { createEventIdFromRoomId, redactsOf, type Pdu } from '../rooms/event.js';
import type { RoomVersion } from '../rooms/room-versions.js';
import type { BackfillPositions } from '../storage/backfill.js';
import { markRedacted, promoteOutlier, redactionsOf, snapshotChainLength } from '../storage/backfill.js';
import type { Engine } from '../storage/dialect.js';
import { getEventRowById, insertEvent } from '../storage/events.js';
import type { Database } from '../storage/schema.js';
import { loadSnapshot, stateKey, type StateMapNids } from '../storage/state.js';
import { checkAgainstAuthEvents, snapshotOf, type AuthInput } from './remote-events.js';
import { writeSideTables } from './room-writer.js';
import {
  eventsById,
  eventsByNid,
  forRules,
  lookupState,
  resolveStates,
  stateAfter,
  type StoredEvent,
} from './state-at.js';

export interface BackfillRoom {
  roomId: string;
  roomNid: number;
  version: RoomVersion;
}

export interface BackfillBatch {
  /** Checked events (wire form, as stored). */
  events: readonly { eventId: string; raw: Pdu }[];
  /** States after prev events this server has no state for (from /state_ids): prev event id → state. */
  prevStates: ReadonlyMap<string, StateMapNids>;
}

export interface BackfillResult {
  /** Events newly placed in the timeline (inserted or promoted from outliers), newest first. */
  placed: string[];
  /** Outliers promoted to timeline events (their cached forms are stale). */
  promoted: string[];
  rejected: string[];
  /** Already known, or not placeable (a prev event whose state is unknown, a damaged order). */
  skipped: string[];
}

interface After {
  map: StateMapNids;
  snap: { nid: number; chainLen: number };
}

const asAuth = (e: StoredEvent): AuthInput => ({
  eventId: e.eventId,
  pdu: e.pdu,
  rejected: e.row.rejected_reason !== null,
});

/** Oldest first: by depth (prev events have a lower depth), then event id for a stable order. */
function oldestFirst<T extends { eventId: string; raw: Pdu }>(events: readonly T[]): T[] {
  return [...events].sort(
    (a, b) => a.raw.depth - b.raw.depth || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0),
  );
}

/** Persists a backfilled batch in `trx`; see the module comment. */
export async function writeBackfill(
  trx: Transaction<Database>,
  engine: Engine,
  room: BackfillRoom,
  batch: BackfillBatch,
  positions: BackfillPositions,
): Promise<BackfillResult> {
  const { roomNid, version } = room;
  const ordered = oldestFirst(batch.events);
  // Newest gets the highest (least negative) position, so stream order follows the graph going back.
  const allocated = positions.allocate(ordered.length);
  const positionOf = new Map(ordered.map((e, i) => [e.eventId, allocated[ordered.length - 1 - i] as number]));
  const result: BackfillResult = { placed: [], promoted: [], rejected: [], skipped: [] };
  const afters = new Map<string, After>();
  const inBatch = new Set(ordered.map((e) => e.eventId));
  const redactedEarlier = await earlierRedactions(trx, room, inBatch);

  for (const ev of ordered) {
    const existing = await getEventRowById(trx, ev.eventId);
    const plainOutlier =
      existing !== undefined &&
      Number(existing.room_nid) === roomNid &&
      existing.outlier === 1 &&
      existing.state_snapshot_nid === null &&
      existing.rejected_reason === null;
    if (existing && !plainOutlier) {
      result.skipped.push(ev.eventId);
      continue;
    }
    const pdu = forRules(ev.raw, version);
    const before = await stateBeforeOf(trx, room, pdu, afters, inBatch, batch.prevStates);
    if (!before) {
      result.skipped.push(ev.eventId);
      continue;
    }
    const reason = await authFailure(trx, room, pdu, before.map);
    // A plain outlier is part of a state this server already uses: a failing one is left as it is.
    if (reason !== undefined && plainOutlier) {
      result.skipped.push(ev.eventId);
      continue;
    }
    const snap = await snapshotOf(trx, roomNid, before.map, before.base);
    if (reason !== undefined) {
      await insertEvent(
        trx,
        rowOf(ev, pdu, roomNid, null, snap.nid, reason),
        pdu.prev_events,
        pdu.auth_events,
      );
      afters.set(ev.eventId, { map: before.map, snap });
      result.rejected.push(ev.eventId);
      continue;
    }
    const position = positionOf.get(ev.eventId) as number;
    let nid: number;
    if (existing) {
      nid = Number(existing.event_nid);
      await promoteOutlier(trx, nid, position, snap.nid);
      result.promoted.push(ev.eventId);
    } else {
      nid = await insertEvent(
        trx,
        rowOf(ev, pdu, roomNid, position, snap.nid, null),
        pdu.prev_events,
        pdu.auth_events,
      );
    }
    const redacts = pdu.type === 'm.room.redaction' && (await redactionApplies(trx, room, pdu, before.map));
    await writeSideTables(
      trx,
      engine,
      { pdu: ev.raw, eventId: ev.eventId, prevIds: [], authIds: [] },
      nid,
      roomNid,
      redacts,
    );
    const earlier = redactedEarlier.get(ev.eventId);
    if (earlier) await applyEarlierRedactions(trx, room, { nid, pdu }, earlier);
    result.placed.unshift(ev.eventId);
    if (typeof pdu.state_key === 'string') {
      const map = new Map(before.map);
      map.set(stateKey(pdu.type, pdu.state_key), nid);
      afters.set(ev.eventId, {
        map,
        snap: await snapshotOf(trx, roomNid, map, { ...snap, map: before.map }),
      });
    } else afters.set(ev.eventId, { map: before.map, snap });
  }
  return result;
}

function rowOf(
  ev: { eventId: string; raw: Pdu },
  pdu: Pdu,
  roomNid: number,
  position: number | null,
  snapshotNid: number,
  rejectedReason: string | null,
) {
  return {
    eventId: ev.eventId,
    roomNid,
    type: pdu.type,
    stateKey: pdu.state_key ?? null,
    sender: pdu.sender,
    depth: pdu.depth,
    originServerTs: pdu.origin_server_ts,
    streamOrdering: position,
    json: canonicalJson(ev.raw),
    stateSnapshotNid: snapshotNid,
    containsUrl: typeof pdu.content.url === 'string',
    outlier: rejectedReason !== null,
    rejectedReason,
  };
}

/**
 * The state before `pdu` with a snapshot to build on when it has a single prev event whose snapshot holds it, or
 * undefined when the state after one of its prev events is unknown here (or that prev comes later in the batch).
 */
async function stateBeforeOf(
  trx: Transaction<Database>,
  room: BackfillRoom,
  pdu: Pdu,
  afters: ReadonlyMap<string, After>,
  inBatch: ReadonlySet<string>,
  given: ReadonlyMap<string, StateMapNids>,
): Promise<{ map: StateMapNids; base?: { nid: number; chainLen: number; map: StateMapNids } } | undefined> {
  if (pdu.prev_events.length === 0) {
    return pdu.type === 'm.room.create' && pdu.state_key === '' ? { map: new Map() } : undefined;
  }
  const stored = await eventsById(trx, room.roomNid, pdu.prev_events, room.version);
  const states: StateMapNids[] = [];
  let base: { nid: number; chainLen: number; map: StateMapNids } | undefined;
  for (const id of pdu.prev_events) {
    const a = afters.get(id);
    if (a) {
      states.push(a.map);
      base = { ...a.snap, map: a.map };
      continue;
    }
    if (inBatch.has(id)) return undefined; // a prev placed later: a depth that lies, or skipped
    const prev = stored.get(id);
    const after = prev ? await stateAfter(trx, prev) : undefined;
    if (after && prev) {
      states.push(after);
      const stateless = typeof prev.pdu.state_key !== 'string' || prev.row.rejected_reason !== null;
      if (stateless && prev.row.state_snapshot_nid !== null) {
        const nid = Number(prev.row.state_snapshot_nid);
        base = { nid, chainLen: await snapshotChainLength(trx, nid), map: after };
      }
      continue;
    }
    const fetched = given.get(id);
    if (!fetched) return undefined;
    states.push(fetched);
  }
  if (states.length === 1)
    return base ? { map: states[0] as StateMapNids, base } : { map: states[0] as StateMapNids };
  return { map: await resolveStates(trx, room.roomNid, room.version, states) };
}

/** Why `pdu` is rejected: by its own auth events, or by the state before it. Undefined when allowed. */
async function authFailure(
  trx: Transaction<Database>,
  room: BackfillRoom,
  pdu: Pdu,
  before: StateMapNids,
): Promise<string | undefined> {
  const { version } = room;
  const auth = await eventsById(trx, room.roomNid, pdu.auth_events, version);
  if (pdu.auth_events.some((id) => !auth.has(id))) return 'auth events unknown';
  const isCreate = pdu.type === 'm.room.create' && pdu.state_key === '';
  let create: AuthInput | undefined;
  if (!version.createEventInAuthEvents && !isCreate) {
    const id = createEventIdFromRoomId(room.roomId);
    const found = (await eventsById(trx, room.roomNid, [id], version)).get(id);
    create = found && asAuth(found);
  }
  const own = checkAgainstAuthEvents(pdu, [...auth.values()].map(asAuth), version, create);
  if (own) return `not allowed by its auth events: ${own}`;
  const needed = new Set([stateKey('m.room.create', '')]);
  for (const [t, k] of authEventTypesFor(pdu, version)) needed.add(stateKey(t, k));
  const nids = [...needed].map((k) => before.get(k)).filter((n): n is number => n !== undefined);
  const events = await eventsByNid(trx, nids, version);
  const ids = new Map([...events.values()].map((e) => [e.pdu, e.eventId]));
  const atBefore = checkEventAuth(pdu, lookupState(before, events), version, {
    eventIdOf: (p) => ids.get(p) ?? '',
  });
  return atBefore.allowed ? undefined : `not allowed by the state before it: ${atBefore.reason}`;
}

/** Whether a backfilled redaction may redact its target (in this room, allowed by the state before it). */
async function redactionApplies(
  trx: Transaction<Database>,
  room: BackfillRoom,
  pdu: Pdu,
  before: StateMapNids,
): Promise<boolean> {
  const target = redactsOf(pdu, room.version);
  if (!target) return false;
  const found = (await eventsById(trx, room.roomNid, [target], room.version)).get(target);
  return found !== undefined && mayRedact(trx, room, pdu, found.pdu, before);
}

/** "Handling redactions": the redacter has the redact level in `state`, or is on the original sender's server. */
async function mayRedact(
  trx: Transaction<Database>,
  room: BackfillRoom,
  redaction: Pdu,
  target: Pdu,
  state: StateMapNids,
): Promise<boolean> {
  const pl = state.get(stateKey('m.room.power_levels', ''));
  const create = state.get(stateKey('m.room.create', ''));
  const events = await eventsByNid(
    trx,
    [pl, create].filter((n): n is number => n !== undefined),
    room.version,
  );
  return redactionAllowed(redaction, target, lookupState(state, events), room.version);
}

/** Stored redactions naming events of the batch (received before them): target id → redactions. */
async function earlierRedactions(
  trx: Transaction<Database>,
  room: BackfillRoom,
  ids: ReadonlySet<string>,
): Promise<Map<string, { eventId: string; pdu: Pdu; snapshotNid: number }[]>> {
  const out = new Map<string, { eventId: string; pdu: Pdu; snapshotNid: number }[]>();
  for (const r of await redactionsOf(trx, room.roomNid, ids)) {
    let pdu: Pdu;
    try {
      pdu = forRules(JSON.parse(r.json) as Pdu, room.version);
    } catch {
      continue; // damaged JSON: the doctor reports it
    }
    const target = redactsOf(pdu, room.version);
    if (target === undefined || !ids.has(target)) continue;
    out.set(target, [...(out.get(target) ?? []), { eventId: r.eventId, pdu, snapshotNid: r.snapshotNid }]);
  }
  return out;
}

/** Marks a backfilled event redacted by the first earlier redaction allowed by the state before that redaction. */
async function applyEarlierRedactions(
  trx: Transaction<Database>,
  room: BackfillRoom,
  target: { nid: number; pdu: Pdu },
  redactions: readonly { eventId: string; pdu: Pdu; snapshotNid: number }[],
): Promise<void> {
  for (const r of redactions) {
    const snap = await loadSnapshot(trx, r.snapshotNid, room.roomNid);
    if (snap && (await mayRedact(trx, room, r.pdu, target.pdu, snap.map))) {
      await markRedacted(trx, target.nid, r.eventId);
      return;
    }
  }
}
