import { addIdColumn } from '../dialect.js';
import type { Migration } from './types.js';

/**
 * The outbound federation queue and inbound transaction dedupe.
 *
 * `federation_sender_position` is the stream position up to which committed rows (local events, receipts, presence,
 * device-list changes) have been fanned out into `federation_outbox`; the fan-out advances it in the same transaction
 * as the outbox rows it writes, so a crash between an event's commit and its fan-out replays the fan-out at start.
 * `federation_outbox` holds, per destination, what still has to reach it: PDUs by event_nid (the JSON stays in
 * `events`), EDUs with their content. Rows are deleted when the destination acknowledges the transaction.
 * `federation_destinations` keeps each destination's retry state. `federation_received_txns` remembers the answer
 * to each transaction another server sent, so a retried transaction is answered without being processed again;
 * `federation_received_to_device` the message ids of to-device EDUs delivered, per remote sender.
 */
export const m0013: Migration = {
  version: 13,
  name: 'federation_queue',
  async up(db, engine) {
    await db.schema
      .createTable('federation_sender_position')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('stream_pos', 'bigint', (c) => c.notNull())
      .execute();
    await addIdColumn(engine, db.schema.createTable('federation_outbox'), 'id')
      .addColumn('destination', 'text', (c) => c.notNull())
      .addColumn('event_nid', 'bigint')
      .addColumn('room_nid', 'bigint')
      .addColumn('edu_type', 'text')
      .addColumn('edu_content', 'text')
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('federation_outbox_destination')
      .on('federation_outbox')
      .columns(['destination', 'id'])
      .execute();
    await db.schema
      .createTable('federation_destinations')
      .addColumn('destination', 'text', (c) => c.primaryKey())
      .addColumn('failure_count', 'integer', (c) => c.notNull())
      .addColumn('retry_last_ts', 'bigint', (c) => c.notNull())
      .addColumn('retry_interval_ms', 'bigint', (c) => c.notNull())
      .addColumn('last_success_ts', 'bigint')
      .execute();
    await db.schema
      .createTable('federation_received_txns')
      .addColumn('origin', 'text', (c) => c.notNull())
      .addColumn('txn_id', 'text', (c) => c.notNull())
      .addColumn('response', 'text', (c) => c.notNull())
      .addColumn('received_ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('federation_received_txns_pk', ['origin', 'txn_id'])
      .execute();
    await db.schema
      .createTable('federation_received_to_device')
      .addColumn('sender', 'text', (c) => c.notNull())
      .addColumn('message_id', 'text', (c) => c.notNull())
      .addColumn('received_ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('federation_received_to_device_pk', ['sender', 'message_id'])
      .execute();
  },
};
