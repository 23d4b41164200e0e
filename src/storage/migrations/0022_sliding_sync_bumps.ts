import { sql } from 'kysely';
import type { Migration } from './types.js';

/**
 * Sliding sync: each room's bump stamp (stream position of its latest event of a bump type) and latest position,
 * derived from committed events, so that a user's room list is sorted from one indexed read instead of a per-room
 * subquery over `events`. Filled here from the events already stored; later events are added by the sliding sync
 * read model (src/storage/sliding-sync-bumps.ts), which keeps the position it has covered in
 * `sliding_sync_bump_mark` (one row).
 */
export const m0022: Migration = {
  version: 22,
  name: 'sliding_sync_bumps',
  async up(db) {
    await db.schema
      .createTable('sliding_sync_room_bumps')
      // No foreign key: a background write for a room purged meanwhile must not fail the others.
      .addColumn('room_nid', 'bigint', (c) => c.primaryKey())
      .addColumn('bump', 'bigint')
      .addColumn('last', 'bigint')
      .execute();
    await db.schema
      .createTable('sliding_sync_bump_mark')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('stream', 'bigint', (c) => c.notNull())
      .execute();
    // The bump event types of src/storage/sliding-sync-bumps.ts (BUMP_EVENT_TYPES) as of this migration.
    await sql`
      INSERT INTO sliding_sync_room_bumps (room_nid, bump, last)
      SELECT room_nid,
        MAX(CASE WHEN outlier = 0 AND rejected_reason IS NULL AND soft_failed = 0 AND type IN (
          'm.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start',
          'm.beacon_info') THEN stream_ordering END),
        MAX(stream_ordering)
      FROM events WHERE stream_ordering IS NOT NULL GROUP BY room_nid`.execute(db);
    await sql`
      INSERT INTO sliding_sync_bump_mark (id, stream)
      SELECT 1, COALESCE(MAX(stream_ordering), 0) FROM events`.execute(db);
  },
};
