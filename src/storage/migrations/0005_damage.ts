import type { Migration } from './types.js';

/** Damaged rows that readers skipped, for `hearth doctor` to find and repair. */
export const m0005: Migration = {
  version: 5,
  name: 'damage_reports',
  async up(db) {
    await db.schema
      .createTable('damage_reports')
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('room_id', 'text', (c) => c.notNull())
      .addColumn('event_id', 'text', (c) => c.notNull())
      .addColumn('detail', 'text', (c) => c.notNull())
      .addColumn('first_seen_ts', 'bigint', (c) => c.notNull())
      .addColumn('last_seen_ts', 'bigint', (c) => c.notNull())
      .addColumn('count', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('damage_reports_pk', ['kind', 'room_id', 'event_id'])
      .execute();
  },
};
