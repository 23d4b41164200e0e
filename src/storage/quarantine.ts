/**
 * The quarantine tables of `hearth doctor --repair`: damaged events and dangling rows move here instead of being
 * deleted, with the reason and the time, so that an operator can inspect (and, by hand, restore) them.
 */
import { sql } from 'kysely';
import type { Engine } from './dialect.js';
import type { EventRow } from './events.js';
import type { Executor } from './users.js';

export interface QuarantineEntry {
  what: 'event' | string;
  eventId: string | null;
  roomId: string | null;
  reason: string;
  quarantinedTs: number;
  row: string;
}

/**
 * Moves an event out of the event graph: the whole row is copied to quarantined_events, then every row that
 * references it by nid (snapshot entries, current state, membership, extremities, side tables) and the event
 * itself are removed. The caller rebuilds the room's state around the gap.
 */
export async function quarantineEvent(
  db: Executor,
  engine: Engine,
  row: EventRow,
  roomId: string,
  reason: string,
): Promise<void> {
  const nid = Number(row.event_nid);
  await db
    .insertInto('quarantined_events')
    .values({
      event_nid: nid,
      event_id: row.event_id,
      room_id: roomId,
      reason,
      row_json: JSON.stringify(row),
      quarantined_ts: Date.now(),
    })
    .onConflict((oc) => oc.column('event_nid').doNothing())
    .execute();
  await db.deleteFrom('state_snapshot_entries').where('event_nid', '=', nid).execute();
  await db.deleteFrom('current_state').where('event_nid', '=', nid).execute();
  await db.deleteFrom('room_members').where('event_nid', '=', nid).execute();
  await db.deleteFrom('forward_extremities').where('event_nid', '=', nid).execute();
  await db.deleteFrom('event_edges').where('event_nid', '=', nid).execute();
  await db.deleteFrom('event_auth_edges').where('event_nid', '=', nid).execute();
  await db.deleteFrom('event_relations').where('event_nid', '=', nid).execute();
  // A transaction id of a quarantined event is kept with it: a retry must not send the message a second time.
  const txns = await db.selectFrom('event_txn_ids').selectAll().where('event_nid', '=', nid).execute();
  for (const t of txns)
    await quarantineRow(db, 'event_txn_ids', t, `its event ${row.event_id} was quarantined`);
  await db.deleteFrom('event_txn_ids').where('event_nid', '=', nid).execute();
  if (engine === 'sqlite') await sql`DELETE FROM event_search WHERE rowid = ${nid}`.execute(db);
  else await sql`DELETE FROM event_search WHERE event_nid = ${nid}`.execute(db);
  await db.deleteFrom('events').where('event_nid', '=', nid).execute();
}

/** Copies a row of `table` into quarantined_rows; the caller deletes it from `table`. */
export async function quarantineRow(db: Executor, table: string, row: object, reason: string): Promise<void> {
  await db
    .insertInto('quarantined_rows')
    .values({ table_name: table, row_json: JSON.stringify(row), reason, quarantined_ts: Date.now() })
    .execute();
}

export async function listQuarantine(db: Executor): Promise<QuarantineEntry[]> {
  const events = await db.selectFrom('quarantined_events').selectAll().orderBy('quarantined_ts').execute();
  const rows = await db.selectFrom('quarantined_rows').selectAll().orderBy('quarantined_ts').execute();
  return [
    ...events.map((e) => ({
      what: 'event',
      eventId: e.event_id,
      roomId: e.room_id,
      reason: e.reason,
      quarantinedTs: Number(e.quarantined_ts),
      row: e.row_json,
    })),
    ...rows.map((r) => ({
      what: r.table_name,
      eventId: null,
      roomId: null,
      reason: r.reason,
      quarantinedTs: Number(r.quarantined_ts),
      row: r.row_json,
    })),
  ];
}

/** Event ids that an edge may point at without being a problem: quarantined here, or recorded as missing. */
export async function knownAbsentEventIds(
  db: Executor,
  roomNid: number,
  roomId: string,
): Promise<Set<string>> {
  const q = await db
    .selectFrom('quarantined_events')
    .select('event_id')
    .where('room_id', '=', roomId)
    .execute();
  const m = await db
    .selectFrom('missing_events')
    .select('event_id')
    .where('room_nid', '=', roomNid)
    .execute();
  return new Set([...q.map((r) => r.event_id), ...m.map((r) => r.event_id)]);
}

export async function recordMissingEvents(
  db: Executor,
  roomNid: number,
  edges: readonly { eventId: string; referencedBy: string }[],
): Promise<void> {
  for (const e of edges) {
    await db
      .insertInto('missing_events')
      .values({
        room_nid: roomNid,
        event_id: e.eventId,
        referenced_by: e.referencedBy,
        recorded_ts: Date.now(),
      })
      .onConflict((oc) => oc.columns(['room_nid', 'event_id']).doNothing())
      .execute();
  }
}
