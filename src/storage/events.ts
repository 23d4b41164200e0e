/** Event rows: the only place events are read from or written to. */
import { sql, type RawBuilder, type Selectable } from 'kysely';
import type { EventsTable } from './schema.js';
import type { Executor } from './users.js';

export type EventRow = Selectable<EventsTable>;

export interface NewEventRow {
  eventId: string;
  roomNid: number;
  type: string;
  stateKey: string | null;
  sender: string;
  depth: number;
  originServerTs: number;
  /** Null only with `outlier` (no stream position: outliers, rejected and soft-failed events). */
  streamOrdering: number | null;
  json: string;
  /** The state before the event; null only for an outlier whose state is unknown. */
  stateSnapshotNid: number | null;
  containsUrl: boolean;
  outlier?: boolean;
  rejectedReason?: string | null;
  softFailed?: boolean;
}

export async function insertEvent(
  db: Executor,
  ev: NewEventRow,
  prevIds: string[],
  authIds: string[],
): Promise<number> {
  const row = await db
    .insertInto('events')
    .values({
      event_id: ev.eventId,
      room_nid: ev.roomNid,
      type: ev.type,
      state_key: ev.stateKey,
      sender: ev.sender,
      depth: ev.depth,
      origin_server_ts: ev.originServerTs,
      stream_ordering: ev.streamOrdering,
      json: ev.json,
      state_snapshot_nid: ev.stateSnapshotNid,
      outlier: ev.outlier ? 1 : 0,
      contains_url: ev.containsUrl ? 1 : 0,
      redacted_by: null,
      rejected_reason: ev.rejectedReason ?? null,
      soft_failed: ev.softFailed ? 1 : 0,
    })
    .returning('event_nid')
    .executeTakeFirstOrThrow();
  const eventNid = Number(row.event_nid);
  const prev = [...new Set(prevIds)].map((prev_event_id) => ({ event_nid: eventNid, prev_event_id }));
  if (prev.length) await db.insertInto('event_edges').values(prev).execute();
  const auth = [...new Set(authIds)].map((auth_event_id) => ({ event_nid: eventNid, auth_event_id }));
  if (auth.length) await db.insertInto('event_auth_edges').values(auth).execute();
  return eventNid;
}

export async function getEventRowById(db: Executor, eventId: string): Promise<EventRow | undefined> {
  return db.selectFrom('events').selectAll().where('event_id', '=', eventId).executeTakeFirst();
}

export async function getEventRowsByNid(db: Executor, nids: readonly number[]): Promise<EventRow[]> {
  if (nids.length === 0) return [];
  const out: EventRow[] = [];
  for (let i = 0; i < nids.length; i += 500) {
    out.push(
      ...(await db
        .selectFrom('events')
        .selectAll()
        .where('event_nid', 'in', nids.slice(i, i + 500))
        .execute()),
    );
  }
  return out;
}

export async function findTxnEvent(
  db: Executor,
  userId: string,
  deviceId: string,
  txnId: string,
): Promise<string | undefined> {
  const row = await db
    .selectFrom('event_txn_ids as t')
    .innerJoin('events as e', 'e.event_nid', 't.event_nid')
    .select('e.event_id')
    .where('t.user_id', '=', userId)
    .where('t.device_id', '=', deviceId)
    .where('t.txn_id', '=', txnId)
    .executeTakeFirst();
  return row?.event_id;
}

/**
 * The events stored for several client transaction ids at once (the room writer's group commit), keyed by
 * `JSON.stringify([userId, deviceId, txnId])`.
 */
export async function findTxnEvents(
  db: Executor,
  keys: readonly { userId: string; deviceId: string; txnId: string }[],
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (keys.length === 0) return out;
  const rows = await db
    .selectFrom('event_txn_ids as t')
    .innerJoin('events as e', 'e.event_nid', 't.event_nid')
    .select(['t.user_id', 't.device_id', 't.txn_id', 'e.event_id'])
    .where((eb) =>
      eb.or(
        keys.map((k) =>
          eb.and([
            eb('t.user_id', '=', k.userId),
            eb('t.device_id', '=', k.deviceId),
            eb('t.txn_id', '=', k.txnId),
          ]),
        ),
      ),
    )
    .execute();
  for (const r of rows) out.set(JSON.stringify([r.user_id, r.device_id, r.txn_id]), r.event_id);
  return out;
}

/** The prev and auth edges of several events written in one transaction, as two multi-row inserts (in chunks). */
export async function insertEventEdges(
  db: Executor,
  events: readonly { eventNid: number; prevIds: readonly string[]; authIds: readonly string[] }[],
): Promise<void> {
  const prev = events.flatMap((e) =>
    [...new Set(e.prevIds)].map((prev_event_id) => ({ event_nid: e.eventNid, prev_event_id })),
  );
  const auth = events.flatMap((e) =>
    [...new Set(e.authIds)].map((auth_event_id) => ({ event_nid: e.eventNid, auth_event_id })),
  );
  for (let i = 0; i < prev.length; i += 500) {
    await db
      .insertInto('event_edges')
      .values(prev.slice(i, i + 500))
      .execute();
  }
  for (let i = 0; i < auth.length; i += 500) {
    await db
      .insertInto('event_auth_edges')
      .values(auth.slice(i, i + 500))
      .execute();
  }
}

/**
 * Moves the one forward extremity of each room to its new event (`moves` of different rooms, the group commit's): one
 * UPDATE for all of them. A room whose row count is not exactly one (its rows differ from what the writer's head
 * says) gets its extremities replaced by the new event instead.
 */
export async function moveExtremities(
  db: Executor,
  moves: readonly { roomNid: number; eventNid: number }[],
): Promise<void> {
  for (let i = 0; i < moves.length; i += 200) {
    const chunk = moves.slice(i, i + 200);
    const updated = await sql<{ room_nid: number }>`${moveExtremitiesSql(chunk)}`.execute(db);
    await replaceUnmoved(db, chunk, updated.rows);
  }
}

/**
 * The UPDATE of {@link moveExtremities} for one chunk, returning the room nid of every row moved. A room with several
 * rows would collide with itself (its rows all moved to one event): it is left alone.
 */
export function moveExtremitiesSql(
  chunk: readonly { roomNid: number; eventNid: number }[],
): RawBuilder<unknown> {
  const cases = sql.join(
    chunk.map((m) => sql`WHEN ${m.roomNid} THEN CAST(${m.eventNid} AS BIGINT)`),
    sql` `,
  );
  const nids = sql.join(chunk.map((m) => sql`${m.roomNid}`));
  return sql`UPDATE forward_extremities SET event_nid = CASE room_nid ${cases} END WHERE room_nid IN (${nids}) AND (SELECT count(*) FROM forward_extremities AS f2 WHERE f2.room_nid = forward_extremities.room_nid) = 1 RETURNING room_nid`;
}

/** The rooms of `chunk` not moved by exactly one row get their extremities replaced by the new event. */
export async function replaceUnmoved(
  db: Executor,
  chunk: readonly { roomNid: number; eventNid: number }[],
  updated: readonly { room_nid: number | string }[],
): Promise<void> {
  const count = new Map<number, number>();
  for (const r of updated) count.set(Number(r.room_nid), (count.get(Number(r.room_nid)) ?? 0) + 1);
  for (const m of chunk) {
    if (count.get(m.roomNid) === 1) continue;
    await db.deleteFrom('forward_extremities').where('room_nid', '=', m.roomNid).execute();
    await db
      .insertInto('forward_extremities')
      .values({ room_nid: m.roomNid, event_nid: m.eventNid })
      .execute();
  }
}
