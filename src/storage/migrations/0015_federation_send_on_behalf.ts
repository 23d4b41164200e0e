import type { Migration } from './types.js';

/**
 * Events this server relays for another server: a join, leave or knock that a remote server handed over with
 * send_join/send_leave/send_knock is persisted here and must reach the other servers in the room (Synapse's
 * send_on_behalf_of). The mark is written before the event is persisted, so the fan-out, which reads committed
 * events only, always finds it; a mark whose event never committed is harmless.
 */
export const m0015: Migration = {
  version: 15,
  name: 'federation_send_on_behalf',
  async up(db) {
    await db.schema
      .createTable('federation_send_on_behalf')
      .addColumn('event_id', 'text', (c) => c.primaryKey())
      .addColumn('origin', 'text', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .execute();
  },
};
