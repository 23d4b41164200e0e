import type { Migration } from './types.js';

/**
 * The durable homeserver → application service queue, derived from the global stream (like the federation fan-out).
 *
 * `appservice_state` holds, per application service id, the stream position up to which everything (events,
 * receipts, presence, to-device messages, device-list changes) has been delivered, and the last transaction id used.
 * `appservice_txns` holds at most one transaction per application service that was built but not yet acknowledged:
 * its id, the stream range it covers and its body exactly as sent, so a retry (after a failure or a crash) sends the
 * same id with the same events. The position advances, and the row is deleted, in one transaction after a 2xx.
 */
export const m0017: Migration = {
  version: 17,
  name: 'appservice_queue',
  async up(db) {
    await db.schema
      .createTable('appservice_state')
      .addColumn('as_id', 'text', (c) => c.primaryKey())
      .addColumn('stream_pos', 'bigint', (c) => c.notNull())
      .addColumn('last_txn_id', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('appservice_txns')
      .addColumn('as_id', 'text', (c) => c.primaryKey())
      .addColumn('txn_id', 'bigint', (c) => c.notNull())
      .addColumn('from_pos', 'bigint', (c) => c.notNull())
      .addColumn('to_pos', 'bigint', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .execute();
  },
};
