/**
 * Checks that span rooms: unique stream orderings, transaction ids pointing at events, device-owned rows (to-device
 * messages, keys) pointing at devices, and the damage readers recorded.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../storage/schema.js';
import { quarantineRow } from '../storage/quarantine.js';
import type { Executor } from '../storage/users.js';
import type { Problem } from './problems.js';

/** Tables whose rows belong to a device (added by the E2EE work); checked only when they exist. */
const DEVICE_TABLES = [
  'to_device_messages',
  'to_device_txns',
  'e2e_device_keys',
  'e2e_one_time_keys',
  'e2e_fallback_keys',
];

/** event_nids whose stream ordering is missing (non-outliers) or shared with an earlier event. */
export async function streamOrderingProblems(
  db: Executor,
): Promise<{ problems: Problem[]; nids: Set<number>; byRoom: Map<number, Problem[]> }> {
  const dup = await sql<{
    event_nid: number;
    event_id: string;
    room_nid: number;
    room_id: string;
    stream_ordering: number | null;
  }>`
    SELECT e.event_nid, e.event_id, e.room_nid, r.room_id, e.stream_ordering
    FROM events e JOIN rooms r ON r.room_nid = e.room_nid
    WHERE (e.stream_ordering IS NULL AND e.outlier = 0)
       OR e.stream_ordering IN (SELECT stream_ordering FROM events WHERE stream_ordering IS NOT NULL
                                GROUP BY stream_ordering HAVING COUNT(*) > 1)
    ORDER BY e.stream_ordering, e.event_nid`.execute(db);
  const problems: Problem[] = [];
  const nids = new Set<number>();
  const byRoom = new Map<number, Problem[]>();
  const firstOf = new Set<number>();
  for (const r of dup.rows) {
    const so = r.stream_ordering === null ? null : Number(r.stream_ordering);
    if (so !== null && !firstOf.has(so)) {
      firstOf.add(so); // the earliest event keeps the position
      continue;
    }
    nids.add(Number(r.event_nid));
    const p: Problem = {
      kind: so === null ? 'stream_ordering_missing' : 'stream_ordering_duplicate',
      roomId: r.room_id,
      eventId: r.event_id,
      detail:
        so === null
          ? 'event has no stream ordering'
          : `stream ordering ${so} is shared with an earlier event`,
    };
    problems.push(p);
    const list = byRoom.get(Number(r.room_nid));
    if (list) list.push(p);
    else byRoom.set(Number(r.room_nid), [p]);
  }
  return { problems, nids, byRoom };
}

export async function danglingTxnIds(
  db: Executor,
  repair: Transaction<Database> | undefined,
): Promise<Problem[]> {
  const rows = await db
    .selectFrom('event_txn_ids as t')
    .leftJoin('events as e', 'e.event_nid', 't.event_nid')
    .select(['t.user_id', 't.device_id', 't.txn_id', 't.event_nid', 't.created_ts'])
    .where('e.event_nid', 'is', null)
    .execute();
  for (const r of rows) {
    if (!repair) continue;
    await quarantineRow(repair, 'event_txn_ids', r, `event ${Number(r.event_nid)} does not exist`);
    await repair
      .deleteFrom('event_txn_ids')
      .where('user_id', '=', r.user_id)
      .where('device_id', '=', r.device_id)
      .where('txn_id', '=', r.txn_id)
      .execute();
  }
  return rows.map((r) => ({
    kind: 'txn_id_dangling',
    roomId: null,
    eventId: null,
    detail: `transaction ${r.user_id}/${r.device_id}/${r.txn_id} points at event ${Number(r.event_nid)}, which does not exist`,
  }));
}

/** Tables with a device_id column (read before any transaction: SQLite has one connection). */
export async function deviceTables(db: Kysely<Database>): Promise<Set<string>> {
  const tables = await db.introspection.getTables();
  return new Set(tables.filter((t) => t.columns.some((c) => c.name === 'device_id')).map((t) => t.name));
}

export async function danglingDeviceRows(
  present: ReadonlySet<string>,
  exec: Executor,
  repair: Transaction<Database> | undefined,
): Promise<Problem[]> {
  const problems: Problem[] = [];
  for (const table of DEVICE_TABLES) {
    if (!present.has(table)) continue;
    const orphan = sql`NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = ${sql.ref(`${table}.user_id`)} AND d.device_id = ${sql.ref(`${table}.device_id`)})`;
    const rows = await sql<
      Record<string, unknown>
    >`SELECT * FROM ${sql.table(table)} WHERE ${orphan}`.execute(exec);
    for (const r of rows.rows) {
      problems.push({
        kind: 'device_row_dangling',
        roomId: null,
        eventId: null,
        detail: `${table} row of ${String(r.user_id)}/${String(r.device_id)} belongs to a device that does not exist`,
      });
      if (repair) await quarantineRow(repair, table, r, 'its device does not exist');
    }
    if (repair && rows.rows.length)
      await sql`DELETE FROM ${sql.table(table)} WHERE ${orphan}`.execute(repair);
  }
  return problems;
}

/** Unresolved damage reports (rows readers skipped), optionally of one room. */
export async function openDamageReports(db: Executor, roomId?: string): Promise<Problem[]> {
  let q = db.selectFrom('damage_reports').selectAll().where('resolved_ts', 'is', null);
  if (roomId !== undefined) q = q.where('room_id', '=', roomId);
  const rows = await q.orderBy('first_seen_ts').execute();
  return rows.map((r) => ({
    kind: 'damage_report',
    roomId: r.room_id || null,
    eventId: r.event_id || null,
    detail: `readers skipped a damaged row (${r.kind}, ${Number(r.count)} times): ${r.detail}`,
  }));
}

export async function resolveDamageReports(db: Executor, roomId?: string): Promise<void> {
  let q = db.updateTable('damage_reports').set({ resolved_ts: Date.now() }).where('resolved_ts', 'is', null);
  if (roomId !== undefined) q = q.where('room_id', '=', roomId);
  await q.execute();
}
