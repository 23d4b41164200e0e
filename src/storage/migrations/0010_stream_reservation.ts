import type { Migration } from './types.js';

/**
 * The stream positions reserved so far. Positions handed out in sync tokens may leave no row behind (acknowledged
 * to-device messages are deleted, an ignored receipt stores nothing), so the highest stored row does not bound what
 * clients hold: the counter restarts above this reservation instead.
 */
export const m0010: Migration = {
  version: 10,
  name: 'stream_reservation',
  async up(db) {
    await db.schema
      .createTable('stream_reservation')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('up_to', 'bigint', (c) => c.notNull())
      .execute();
  },
};
