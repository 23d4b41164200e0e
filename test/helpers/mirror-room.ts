/**
 * Until joins over federation exist, two Hearths share a room this way: the room is created on A with a member of
 * B's written into it through A's writer, and its rows (events, graph, state, members) are copied into B's database
 * before B first starts, so both servers hold the same room as if B had joined it. B's database must not hold any
 * other room (the copied ids are kept).
 */
import { sql, type Kysely } from 'kysely';
import type { Storage } from '../../src/storage/db.js';
import type { Database } from '../../src/storage/schema.js';

type AnyDb = Kysely<Record<string, Record<string, unknown>>>;

export async function mirrorRoom(from: Storage, to: Storage, roomId: string): Promise<void> {
  const src = from.db as unknown as AnyDb;
  const dst = to.db as unknown as AnyDb;
  const room = await from.db
    .selectFrom('rooms')
    .select('room_nid')
    .where('room_id', '=', roomId)
    .executeTakeFirstOrThrow();
  const roomNid = Number(room.room_nid);
  const eventNids = (
    await from.db.selectFrom('events').select('event_nid').where('room_nid', '=', roomNid).execute()
  ).map((r) => Number(r.event_nid));
  const snapshotNids = (
    await from.db
      .selectFrom('state_snapshots')
      .select('snapshot_nid')
      .where('room_nid', '=', roomNid)
      .execute()
  ).map((r) => Number(r.snapshot_nid));
  const copy = async (table: keyof Database & string, column: string, ids: number[]): Promise<void> => {
    if (ids.length === 0) return;
    // Parents before children (state snapshots refer to their parent).
    const rows = await src.selectFrom(table).selectAll().where(column, 'in', ids).orderBy(column).execute();
    for (const r of rows) await dst.insertInto(table).values(r).execute();
  };
  await copy('rooms', 'room_nid', [roomNid]);
  await copy('state_snapshots', 'snapshot_nid', snapshotNids);
  await copy('events', 'event_nid', eventNids);
  await copy('state_snapshot_entries', 'snapshot_nid', snapshotNids);
  await copy('event_edges', 'event_nid', eventNids);
  await copy('event_auth_edges', 'event_nid', eventNids);
  await copy('current_state', 'room_nid', [roomNid]);
  await copy('room_members', 'room_nid', [roomNid]);
  await copy('forward_extremities', 'room_nid', [roomNid]);
  if (to.engine === 'postgres') {
    for (const [table, column] of [
      ['rooms', 'room_nid'],
      ['events', 'event_nid'],
      ['state_snapshots', 'snapshot_nid'],
    ] as const) {
      await sql`SELECT setval(pg_get_serial_sequence(${table}, ${column}), (SELECT MAX(${sql.ref(column)}) FROM ${sql.table(table)}))`.execute(
        to.db,
      );
    }
  }
}
