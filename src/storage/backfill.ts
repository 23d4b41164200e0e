/**
 * Storage of backfilled history (events older than what this server had, fetched with /backfill). Backfilled events
 * get NEGATIVE stream orderings, decreasing as the history goes back, as Synapse does: they sort before every event
 * this server received live, and no sync stream, fan-out or notification (which all follow positive positions
 * from a token) ever sees them as new.
 */
import type { Storage } from './db.js';
import { MAX_CHAIN } from './state.js';
import type { Executor } from './users.js';

/**
 * The process-wide allocator of backfill positions: the next one is one below the lowest stream ordering stored
 * (or -1). Initialised once per database from MIN(stream_ordering); allocation is synchronous afterwards, so rooms
 * backfilled in parallel never share a position. A rolled-back batch leaves a gap, which is harmless.
 */
export class BackfillPositions {
  #lowest: number;

  constructor(lowest: number) {
    this.#lowest = Math.min(lowest, 0);
  }

  /** `n` positions, highest first, each below every position handed out or stored before. */
  allocate(n: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(--this.#lowest);
    return out;
  }
}

const allocators = new WeakMap<Storage, Promise<BackfillPositions>>();

/** The backfill position allocator of this database (read from it on first use). */
export function backfillPositions(storage: Storage): Promise<BackfillPositions> {
  let p = allocators.get(storage);
  if (!p) {
    p = storage.db
      .selectFrom('events')
      .select((eb) => eb.fn.min('stream_ordering').as('m'))
      .executeTakeFirst()
      .then((r) => new BackfillPositions(r?.m === null || r?.m === undefined ? 0 : Number(r.m)));
    p.catch(() => allocators.delete(storage));
    allocators.set(storage, p);
  }
  return p;
}

/**
 * The backward extremities at the bottom of a room's timeline: the prev events of its `oldest` lowest-positioned
 * timeline events that are not timeline events here (unknown, or known only as a plain outlier). Rejected events
 * count as known (history is not fetched past them).
 */
export async function backwardExtremities(db: Executor, roomNid: number, oldest = 20): Promise<string[]> {
  const bottom = await db
    .selectFrom('events')
    .select('event_nid')
    .where('room_nid', '=', roomNid)
    .where('stream_ordering', 'is not', null)
    .orderBy('stream_ordering', 'asc')
    .limit(oldest)
    .execute();
  if (bottom.length === 0) return [];
  const edges = await db
    .selectFrom('event_edges')
    .select('prev_event_id')
    .where(
      'event_nid',
      'in',
      bottom.map((b) => Number(b.event_nid)),
    )
    .execute();
  const prevIds = [...new Set(edges.map((e) => e.prev_event_id))];
  if (prevIds.length === 0) return [];
  const known = await db
    .selectFrom('events')
    .select('event_id')
    .where('room_nid', '=', roomNid)
    .where('event_id', 'in', prevIds)
    .where((eb) => eb.or([eb('stream_ordering', 'is not', null), eb('rejected_reason', 'is not', null)]))
    .execute();
  const have = new Set(known.map((k) => k.event_id));
  return prevIds.filter((id) => !have.has(id));
}

/** The ids among `ids` stored in the room with a state snapshot (their state after is computable here). */
export async function idsWithState(
  db: Executor,
  roomNid: number,
  ids: readonly string[],
): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await db
      .selectFrom('events')
      .select('event_id')
      .where('room_nid', '=', roomNid)
      .where('event_id', 'in', ids.slice(i, i + 500))
      .where('state_snapshot_nid', 'is not', null)
      .where('rejected_reason', 'is', null)
      .execute();
    for (const r of rows) out.add(r.event_id);
  }
  return out;
}

/** The chain length of a stored snapshot (MAX_CHAIN when unknown, so nothing is chained onto it). */
export async function snapshotChainLength(db: Executor, snapshotNid: number): Promise<number> {
  const row = await db
    .selectFrom('state_snapshots')
    .select('chain_len')
    .where('snapshot_nid', '=', snapshotNid)
    .executeTakeFirst();
  return Number(row?.chain_len ?? MAX_CHAIN);
}

/**
 * Makes a plain outlier (known from a join's state or auth chain) a timeline event: its backfill position and the
 * state before it. A member event of the current state also moves its `room_members` position with it.
 */
export async function promoteOutlier(
  db: Executor,
  eventNid: number,
  position: number,
  snapshotNid: number,
): Promise<void> {
  await db
    .updateTable('events')
    .set({ stream_ordering: position, state_snapshot_nid: snapshotNid, outlier: 0 })
    .where('event_nid', '=', eventNid)
    .where('outlier', '=', 1)
    .execute();
  await db
    .updateTable('room_members')
    .set({ stream_ordering: position })
    .where('event_nid', '=', eventNid)
    .execute();
}

/** The lowest stream ordering of the room's timeline, or undefined for a room without one. */
export async function lowestPosition(db: Executor, roomNid: number): Promise<number | undefined> {
  const row = await db
    .selectFrom('events')
    .select((eb) => eb.fn.min('stream_ordering').as('m'))
    .where('room_nid', '=', roomNid)
    .executeTakeFirst();
  return row?.m === null || row?.m === undefined ? undefined : Number(row.m);
}

/** A stored redaction of the room, with the state before it. */
export interface StoredRedaction {
  eventId: string;
  json: string;
  snapshotNid: number;
}

/**
 * The room's accepted redactions that name one of `ids` (a redaction received before the event it redacts, which
 * backfill brings later). Reads the room's redaction rows, which are few next to its events.
 */
export async function redactionsOf(
  db: Executor,
  roomNid: number,
  ids: ReadonlySet<string>,
): Promise<StoredRedaction[]> {
  if (ids.size === 0) return [];
  const rows = await db
    .selectFrom('events')
    .select(['event_id', 'json', 'state_snapshot_nid'])
    .where('room_nid', '=', roomNid)
    .where('type', '=', 'm.room.redaction')
    .where('outlier', '=', 0)
    .execute();
  return rows
    .filter(
      (r) => r.state_snapshot_nid !== null && [...ids].some((id) => r.json.includes(JSON.stringify(id))),
    )
    .map((r) => ({ eventId: r.event_id, json: r.json, snapshotNid: Number(r.state_snapshot_nid) }));
}

/** Marks an event redacted by `redactionId` (unless it already is). */
export async function markRedacted(db: Executor, eventNid: number, redactionId: string): Promise<void> {
  await db
    .updateTable('events')
    .set({ redacted_by: redactionId })
    .where('event_nid', '=', eventNid)
    .where('redacted_by', 'is', null)
    .execute();
}
