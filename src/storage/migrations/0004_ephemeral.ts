import type { Migration } from './types.js';

/**
 * Receipts and presence: the persistent ephemeral data /sync delivers. Each row carries the stream position of its
 * last change, so an incremental sync reads `stream_pos > since`; a row is updated in place (latest wins).
 *
 * Receipts are keyed by (room, user, type, thread); `thread_id` is '' for an unthreaded receipt, so the key needs
 * no NULL (a NULL in a primary key is not allowed by PostgreSQL and not unique in SQLite).
 */
export const m0004: Migration = {
  version: 4,
  name: 'ephemeral',
  async up(db) {
    await db.schema
      .createTable('receipts')
      .addColumn('room_nid', 'bigint', (c) => c.notNull().references('rooms.room_nid').onDelete('cascade'))
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('receipt_type', 'text', (c) => c.notNull())
      .addColumn('thread_id', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('event_id', 'text', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull())
      .addColumn('stream_pos', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('receipts_pk', ['room_nid', 'user_id', 'receipt_type', 'thread_id'])
      .execute();
    await db.schema.createIndex('receipts_stream_idx').on('receipts').column('stream_pos').execute();

    await db.schema
      .createTable('presence')
      .addColumn('user_id', 'text', (c) => c.primaryKey())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('status_msg', 'text')
      .addColumn('last_active_ts', 'bigint', (c) => c.notNull())
      .addColumn('currently_active', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('stream_pos', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('presence_stream_idx').on('presence').column('stream_pos').execute();
  },
};
