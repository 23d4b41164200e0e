import { addIdColumn } from '../dialect.js';
import type { Migration } from './types.js';

/**
 * Simplified sliding sync (MSC4186) connections and what each has been sent.
 *
 * A connection is (user, device, conn_id). Each response creates a position (its `pos`), child of the position the
 * request named; `sliding_sync_rooms` rows of a position record, per room, what that response sent (the stream
 * position the room is complete up to, the timeline limit and required_state config it was sent with, the lazy
 * members sent). The state of a connection at a position is the newest row per room along its chain of parents; a
 * request folds that chain into the position it names and drops every other position (answers never processed).
 */
export const m0018: Migration = {
  version: 18,
  name: 'sliding_sync',
  async up(db, engine) {
    await addIdColumn(engine, db.schema.createTable('sliding_sync_connections'), 'conn_nid')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('conn_id', 'text', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addColumn('last_used_ts', 'bigint', (c) => c.notNull())
      .addUniqueConstraint('sliding_sync_connections_key', ['user_id', 'device_id', 'conn_id'])
      .execute();
    await addIdColumn(engine, db.schema.createTable('sliding_sync_positions'), 'pos_nid')
      .addColumn('conn_nid', 'bigint', (c) =>
        c.notNull().references('sliding_sync_connections.conn_nid').onDelete('cascade'),
      )
      .addColumn('parent_pos_nid', 'bigint')
      .addColumn('stream', 'bigint', (c) => c.notNull())
      .addColumn('typing', 'bigint', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('sliding_sync_positions_conn_idx')
      .on('sliding_sync_positions')
      .column('conn_nid')
      .execute();
    await db.schema
      .createTable('sliding_sync_rooms')
      .addColumn('pos_nid', 'bigint', (c) =>
        c.notNull().references('sliding_sync_positions.pos_nid').onDelete('cascade'),
      )
      .addColumn('room_id', 'text', (c) => c.notNull())
      .addColumn('membership', 'text', (c) => c.notNull())
      .addColumn('sent_to', 'bigint', (c) => c.notNull())
      .addColumn('timeline_limit', 'integer', (c) => c.notNull())
      .addColumn('required_state', 'text', (c) => c.notNull())
      .addColumn('lazy_members', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('sliding_sync_rooms_pk', ['pos_nid', 'room_id'])
      .execute();
  },
};
