/**
 * PostgreSQL: the rows a group commit writes after its events (graph edges, search rows, transaction ids and the
 * forward extremity moves, see input/commit-write.ts) in ONE statement, the inserts as data-modifying WITH clauses
 * of the extremities UPDATE. Each statement is a round trip to the server: this turns five into one. The tables
 * are distinct and none of the inserts reads another's rows, so running them as one statement changes nothing
 * else. A group too large for one statement's parameters is written in separate statements by the caller.
 */
import { sql, type Insertable, type RawBuilder } from 'kysely';
import { moveExtremitiesSql, replaceUnmoved } from './events.js';
import type { EventTxnIdsTable } from './schema.js';
import type { SearchRow } from './search.js';
import type { Executor } from './users.js';

/** Below PostgreSQL's 65535 bind parameters, with room to spare. */
const MAX_PARAMS = 30_000;

export interface PgGroupRows {
  prev: { event_nid: number; prev_event_id: string }[];
  auth: { event_nid: number; auth_event_id: string }[];
  search: readonly SearchRow[];
  txns: readonly Insertable<EventTxnIdsTable>[];
  moves: readonly { roomNid: number; eventNid: number }[];
}

/** Whether {@link writePgGroupRows} can take these rows in one statement. */
export function fitsOneStatement(rows: PgGroupRows): boolean {
  const params =
    2 * rows.prev.length +
    2 * rows.auth.length +
    4 * rows.search.length +
    5 * rows.txns.length +
    3 * rows.moves.length;
  return params <= MAX_PARAMS && rows.moves.length <= 200;
}

export async function writePgGroupRows(db: Executor, rows: PgGroupRows): Promise<void> {
  const ctes: RawBuilder<unknown>[] = [];
  const values = <T>(list: readonly T[], row: (r: T) => RawBuilder<unknown>): RawBuilder<unknown> =>
    sql.join(list.map(row));
  if (rows.prev.length) {
    ctes.push(
      sql`p AS (INSERT INTO event_edges (event_nid, prev_event_id) VALUES ${values(rows.prev, (r) => sql`(${r.event_nid}, ${r.prev_event_id})`)})`,
    );
  }
  if (rows.auth.length) {
    ctes.push(
      sql`a AS (INSERT INTO event_auth_edges (event_nid, auth_event_id) VALUES ${values(rows.auth, (r) => sql`(${r.event_nid}, ${r.auth_event_id})`)})`,
    );
  }
  if (rows.search.length) {
    ctes.push(
      sql`s AS (INSERT INTO event_search (event_nid, room_nid, key, value) VALUES ${values(rows.search, (r) => sql`(${r.eventNid}, ${r.roomNid}, ${r.key}, ${r.value})`)})`,
    );
  }
  if (rows.txns.length) {
    ctes.push(
      sql`t AS (INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_nid, created_ts) VALUES ${values(rows.txns, (r) => sql`(${r.user_id}, ${r.device_id}, ${r.txn_id}, ${r.event_nid}, ${r.created_ts})`)})`,
    );
  }
  const main = rows.moves.length ? moveExtremitiesSql(rows.moves) : sql`SELECT NULL AS room_nid WHERE false`;
  if (ctes.length === 0 && rows.moves.length === 0) return;
  const statement = ctes.length ? sql`WITH ${sql.join(ctes, sql`, `)} ${main}` : main;
  const updated = await sql<{ room_nid: number }>`${statement}`.execute(db);
  if (rows.moves.length) await replaceUnmoved(db, rows.moves, updated.rows);
}
