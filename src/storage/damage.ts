/** The damage_reports table: rows readers skipped, recorded for the doctor. */
import { sql } from 'kysely';
import type { Executor } from './users.js';

export interface DamageRow {
  kind: string;
  roomId: string;
  eventId: string;
  detail: string;
  seenTs: number;
  count: number;
}

export async function recordDamage(db: Executor, rows: readonly DamageRow[]): Promise<void> {
  for (const r of rows) {
    await db
      .insertInto('damage_reports')
      .values({
        kind: r.kind,
        room_id: r.roomId,
        event_id: r.eventId,
        detail: r.detail,
        first_seen_ts: r.seenTs,
        last_seen_ts: r.seenTs,
        count: r.count,
      })
      .onConflict((oc) =>
        oc.columns(['kind', 'room_id', 'event_id']).doUpdateSet({
          detail: r.detail,
          last_seen_ts: r.seenTs,
          count: sql`damage_reports.count + ${r.count}`,
        }),
      )
      .execute();
  }
}

export async function listDamage(db: Executor): Promise<DamageRow[]> {
  const rows = await db.selectFrom('damage_reports').selectAll().orderBy('first_seen_ts').execute();
  return rows.map((r) => ({
    kind: r.kind,
    roomId: r.room_id,
    eventId: r.event_id,
    detail: r.detail,
    seenTs: Number(r.last_seen_ts),
    count: Number(r.count),
  }));
}
