/**
 * SQL reads behind the room read endpoints (/messages, /context, /state, /members, relations, threads,
 * timestamp_to_event) and history visibility. Only positions and ids come from here: event bodies are loaded
 * through the EventReader, which skips damaged rows.
 */
import { clientTxnId } from '../util/txn.js';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/schema.js';

type Db = Kysely<Database>;

export interface RoomRow {
  roomNid: number;
  roomId: string;
  roomVersion: string;
  currentSnapshotNid: number | null;
}

/** An event's place in the room stream. */
export interface Position {
  nid: number;
  pos: number;
}

/** An event row's indexable facts (no JSON). */
export interface EventFacts extends Position {
  eventId: string;
  roomNid: number;
  type: string;
  stateKey: string | null;
  snapshotNid: number | null;
}

export type Dir = 'b' | 'f';

const num = (v: unknown): number => Number(v);

export async function findRoom(db: Db, roomId: string): Promise<RoomRow | undefined> {
  const r = await db
    .selectFrom('rooms')
    .select(['room_nid', 'room_id', 'room_version', 'current_snapshot_nid'])
    .where('room_id', '=', roomId)
    .executeTakeFirst();
  if (!r) return undefined;
  return {
    roomNid: num(r.room_nid),
    roomId: r.room_id,
    roomVersion: r.room_version,
    currentSnapshotNid: r.current_snapshot_nid === null ? null : num(r.current_snapshot_nid),
  };
}

/** The user's current membership row in a room (the read model the writer keeps). */
export async function currentMembership(
  db: Db,
  roomNid: number,
  userId: string,
): Promise<{ membership: string; pos: number; nid: number; forgotten: boolean } | undefined> {
  const r = await db
    .selectFrom('room_members')
    .select(['membership', 'stream_ordering', 'event_nid', 'forgotten'])
    .where('room_nid', '=', roomNid)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return r
    ? {
        membership: r.membership,
        pos: num(r.stream_ordering),
        nid: num(r.event_nid),
        forgotten: num(r.forgotten) !== 0,
      }
    : undefined;
}

/**
 * Positions of a room's (non-outlier) events with `after < stream_ordering <= upto`: newest first for `b`,
 * oldest first for `f`.
 */
export async function roomPositions(
  db: Db,
  roomNid: number,
  after: number,
  upto: number,
  dir: Dir,
  limit: number,
): Promise<Position[]> {
  if (upto <= after || limit <= 0) return [];
  const rows = await db
    .selectFrom('events')
    .select(['event_nid', 'stream_ordering'])
    .where('room_nid', '=', roomNid)
    .where('stream_ordering', '>', after)
    .where('stream_ordering', '<=', upto)
    .orderBy('stream_ordering', dir === 'b' ? 'desc' : 'asc')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ nid: num(r.event_nid), pos: num(r.stream_ordering) }));
}

function toFacts(r: {
  event_nid: number;
  event_id: string;
  room_nid: number;
  type: string;
  state_key: string | null;
  stream_ordering: number | null;
  state_snapshot_nid: number | null;
}): EventFacts | undefined {
  if (r.stream_ordering === null) return undefined; // outliers are not part of the room timeline
  return {
    nid: num(r.event_nid),
    pos: num(r.stream_ordering),
    eventId: r.event_id,
    roomNid: num(r.room_nid),
    type: r.type,
    stateKey: r.state_key,
    snapshotNid: r.state_snapshot_nid === null ? null : num(r.state_snapshot_nid),
  };
}

const FACT_COLUMNS = [
  'event_nid',
  'event_id',
  'room_nid',
  'type',
  'state_key',
  'stream_ordering',
  'state_snapshot_nid',
] as const;

export async function eventFacts(db: Db, eventId: string): Promise<EventFacts | undefined> {
  const r = await db
    .selectFrom('events')
    .select(FACT_COLUMNS)
    .where('event_id', '=', eventId)
    .executeTakeFirst();
  return r ? toFacts(r) : undefined;
}

/** The last timeline event of the room at or before `pos` (the state "at" a token is the state after it). */
export async function lastEventAtOrBefore(
  db: Db,
  roomNid: number,
  pos: number,
): Promise<EventFacts | undefined> {
  const r = await db
    .selectFrom('events')
    .select(FACT_COLUMNS)
    .where('room_nid', '=', roomNid)
    .where('stream_ordering', '<=', pos)
    .orderBy('stream_ordering', 'desc')
    .limit(1)
    .executeTakeFirst();
  return r ? toFacts(r) : undefined;
}

/** Stream positions of the user's own m.room.member events in a room, oldest first. */
export async function memberEventPositions(db: Db, roomNid: number, userId: string): Promise<Position[]> {
  const rows = await db
    .selectFrom('events')
    .select(['event_nid', 'stream_ordering'])
    .where('room_nid', '=', roomNid)
    .where('type', '=', 'm.room.member')
    .where('state_key', '=', userId)
    .where('stream_ordering', 'is not', null)
    .orderBy('stream_ordering', 'asc')
    .execute();
  return rows.map((r) => ({ nid: num(r.event_nid), pos: num(r.stream_ordering) }));
}

export async function roomNidsByIds(db: Db, roomIds: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (roomIds.length === 0) return out;
  const rows = await db
    .selectFrom('rooms')
    .select(['room_id', 'room_nid'])
    .where('room_id', 'in', roomIds)
    .execute();
  for (const r of rows) out.set(r.room_id, num(r.room_nid));
  return out;
}

export async function nidsByEventIds(db: Db, ids: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const unique = [...new Set(ids)];
  for (let i = 0; i < unique.length; i += 500) {
    const rows = await db
      .selectFrom('events')
      .select(['event_id', 'event_nid'])
      .where('event_id', 'in', unique.slice(i, i + 500))
      .execute();
    for (const r of rows) out.set(r.event_id, num(r.event_nid));
  }
  return out;
}

/** Transaction ids of the events in `nids` that this device sent. */
export async function txnIdsFor(
  db: Db,
  userId: string,
  deviceId: string,
  nids: readonly number[],
): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  if (nids.length === 0) return out;
  // By event nid only (at most one row per event), the device picked out here: with the user and device in the
  // query SQLite's planner prefers the primary key and scans every transaction id the device ever used.
  const rows = await db
    .selectFrom('event_txn_ids')
    .select(['event_nid', 'txn_id', 'user_id', 'device_id'])
    .where('event_nid', 'in', [...nids])
    .execute();
  for (const r of rows)
    if (r.user_id === userId && r.device_id === deviceId) out.set(num(r.event_nid), clientTxnId(r.txn_id));
  return out;
}

/** Events of the room nearest to `ts`: at/after it (`f`, ascending) or at/before it (`b`, descending). */
export async function eventsNearTs(
  db: Db,
  roomNid: number,
  ts: number,
  dir: Dir,
  limit: number,
): Promise<Position[]> {
  const rows = await db
    .selectFrom('events')
    .select(['event_nid', 'stream_ordering'])
    .where('room_nid', '=', roomNid)
    .where('stream_ordering', 'is not', null)
    .where('origin_server_ts', dir === 'f' ? '>=' : '<=', ts)
    .orderBy('origin_server_ts', dir === 'f' ? 'asc' : 'desc')
    .orderBy('stream_ordering', dir === 'f' ? 'asc' : 'desc')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ nid: num(r.event_nid), pos: num(r.stream_ordering) }));
}

// ---- relations -------------------------------------------------------------------------------------------

export interface RelationPageQuery {
  parentIds: readonly string[];
  relType?: string | undefined;
  eventType?: string | undefined;
  after: number;
  upto: number;
  dir: Dir;
  limit: number;
}

/** Non-redacted children of `parentIds` in the room, within the stream window, in `dir` order. */
export async function relationChildren(db: Db, roomNid: number, q: RelationPageQuery): Promise<Position[]> {
  if (q.parentIds.length === 0 || q.upto <= q.after) return [];
  let query = db
    .selectFrom('event_relations as r')
    .innerJoin('events as e', 'e.event_nid', 'r.event_nid')
    .select(['e.event_nid', 'e.stream_ordering'])
    .where('e.room_nid', '=', roomNid)
    .where('r.relates_to_id', 'in', [...q.parentIds])
    .where('e.redacted_by', 'is', null)
    .where('e.stream_ordering', '>', q.after)
    .where('e.stream_ordering', '<=', q.upto);
  if (q.relType !== undefined) query = query.where('r.rel_type', '=', q.relType);
  if (q.eventType !== undefined) query = query.where('e.type', '=', q.eventType);
  const rows = await query
    .orderBy('e.stream_ordering', q.dir === 'b' ? 'desc' : 'asc')
    .limit(q.limit)
    .execute();
  return rows.map((r) => ({ nid: num(r.event_nid), pos: num(r.stream_ordering) }));
}

/** Event ids of every non-redacted child of `parentIds` in the room (for recursive relation walks). */
export async function childIds(db: Db, roomNid: number, parentIds: readonly string[]): Promise<string[]> {
  if (parentIds.length === 0) return [];
  const rows = await db
    .selectFrom('event_relations as r')
    .innerJoin('events as e', 'e.event_nid', 'r.event_nid')
    .select('e.event_id')
    .where('e.room_nid', '=', roomNid)
    .where('r.relates_to_id', 'in', [...parentIds])
    .where('e.redacted_by', 'is', null)
    .limit(10_000)
    .execute();
  return rows.map((r) => r.event_id);
}

export interface ChildRow {
  parentId: string;
  relType: string;
  nid: number;
  eventId: string;
  sender: string;
  ts: number;
}

/** Non-redacted children (in the parent's room) of the given parents with one of `relTypes`. */
export async function childrenOf(
  db: Db,
  parentIds: readonly string[],
  relTypes: readonly string[],
): Promise<ChildRow[]> {
  if (parentIds.length === 0) return [];
  const rows = await db
    .selectFrom('event_relations as r')
    .innerJoin('events as e', 'e.event_nid', 'r.event_nid')
    .innerJoin('events as p', (join) =>
      join.onRef('p.event_id', '=', 'r.relates_to_id').onRef('p.room_nid', '=', 'e.room_nid'),
    )
    .select(['r.relates_to_id', 'r.rel_type', 'e.event_nid', 'e.event_id', 'e.sender', 'e.origin_server_ts'])
    .where('r.relates_to_id', 'in', [...parentIds])
    .where('r.rel_type', 'in', [...relTypes])
    .where('e.redacted_by', 'is', null)
    .where('e.stream_ordering', 'is not', null)
    .orderBy('e.stream_ordering', 'asc')
    .limit(20_000)
    .execute();
  return rows.map((r) => ({
    parentId: r.relates_to_id,
    relType: r.rel_type,
    nid: num(r.event_nid),
    eventId: r.event_id,
    sender: r.sender,
    ts: num(r.origin_server_ts),
  }));
}

export interface ThreadSummary {
  count: number;
  latestPos: number;
  participated: boolean;
}

/** m.thread counts, latest reply position and the user's participation (as a replier), per root. */
export async function threadSummaries(
  db: Db,
  rootIds: readonly string[],
  userId: string,
): Promise<Map<string, ThreadSummary>> {
  const out = new Map<string, ThreadSummary>();
  if (rootIds.length === 0) return out;
  const rows = await db
    .selectFrom('event_relations as r')
    .innerJoin('events as e', 'e.event_nid', 'r.event_nid')
    .innerJoin('events as p', (join) =>
      join.onRef('p.event_id', '=', 'r.relates_to_id').onRef('p.room_nid', '=', 'e.room_nid'),
    )
    .select((eb) => [
      'r.relates_to_id',
      eb.fn.countAll().as('n'),
      eb.fn.max('e.stream_ordering').as('latest'),
      eb.fn.sum(eb.case().when('e.sender', '=', userId).then(1).else(0).end()).as('mine'),
    ])
    .where('r.relates_to_id', 'in', [...rootIds])
    .where('r.rel_type', '=', 'm.thread')
    .where('e.redacted_by', 'is', null)
    .where('e.stream_ordering', 'is not', null)
    .groupBy('r.relates_to_id')
    .execute();
  for (const r of rows) {
    out.set(r.relates_to_id, { count: num(r.n), latestPos: num(r.latest), participated: num(r.mine) > 0 });
  }
  return out;
}

/** event_nids by stream position (to turn a thread's latest position into its event). */
export async function nidsByPositions(db: Db, positions: readonly number[]): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  if (positions.length === 0) return out;
  const rows = await db
    .selectFrom('events')
    .select(['event_nid', 'stream_ordering'])
    .where('stream_ordering', 'in', [...positions])
    .execute();
  for (const r of rows) out.set(num(r.stream_ordering), num(r.event_nid));
  return out;
}

/**
 * Thread roots of a room whose latest reply is at or before `upto`, latest first. Only replies at or before
 * `cap` count (a departed member's threads as they were when they left). With `participant`, only the threads
 * that user started or replied to.
 */
export async function threadRoots(
  db: Db,
  roomNid: number,
  q: { upto: number; cap?: number | undefined; limit: number; participant?: string | undefined },
): Promise<{ rootId: string; latestPos: number }[]> {
  const { upto, limit, participant } = q;
  const capped = q.cap === undefined ? sql`` : sql`AND e.stream_ordering <= ${q.cap}`;
  const participated = participant
    ? sql`AND (SUM(CASE WHEN e.sender = ${participant} THEN 1 ELSE 0 END) > 0
          OR r.relates_to_id IN (SELECT event_id FROM events WHERE room_nid = ${roomNid} AND sender = ${participant}))`
    : sql``;
  const result = await sql<{ root: string; latest: number }>`
    SELECT r.relates_to_id AS root, MAX(e.stream_ordering) AS latest
    FROM event_relations r JOIN events e ON e.event_nid = r.event_nid
    WHERE e.room_nid = ${roomNid} AND r.rel_type = 'm.thread' AND e.redacted_by IS NULL
      AND e.stream_ordering IS NOT NULL ${capped}
    GROUP BY r.relates_to_id
    HAVING MAX(e.stream_ordering) <= ${upto} ${participated}
    ORDER BY latest DESC
    LIMIT ${limit}`.execute(db);
  return result.rows.map((r) => ({ rootId: r.root, latestPos: num(r.latest) }));
}
