import type { Migration } from './types.js';

/**
 * An index on `event_txn_ids.event_nid`: /sync asks for the transaction ids of timeline events by event nid (so far
 * a scan of every transaction id the device ever used), and deleting an event (a purge) cascades to this table by
 * that column.
 */
export const m0023: Migration = {
  version: 23,
  name: 'event_txn_ids_event_index',
  async up(db) {
    await db.schema.createIndex('event_txn_ids_event_idx').on('event_txn_ids').column('event_nid').execute();
  },
};
