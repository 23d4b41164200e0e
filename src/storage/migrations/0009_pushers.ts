import { addIdColumn } from '../dialect.js';
import type { Migration } from './types.js';

/**
 * Pushers (client-server API "Push notifications"): one row per (user, app_id, pushkey), owned by the device that
 * set it, so that a pusher goes when its device does.
 */
export const m0009: Migration = {
  version: 9,
  name: 'pushers',
  async up(db, engine) {
    await addIdColumn(engine, db.schema.createTable('pushers'), 'id')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('app_id', 'text', (c) => c.notNull())
      .addColumn('pushkey', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('app_display_name', 'text', (c) => c.notNull())
      .addColumn('device_display_name', 'text', (c) => c.notNull())
      .addColumn('profile_tag', 'text')
      .addColumn('lang', 'text', (c) => c.notNull())
      // The `data` object as JSON.
      .addColumn('data', 'text', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addUniqueConstraint('pushers_user_app_key', ['user_id', 'app_id', 'pushkey'])
      .addForeignKeyConstraint(
        'pushers_device_fk',
        ['user_id', 'device_id'],
        'devices',
        ['user_id', 'device_id'],
        (c) => c.onDelete('cascade'),
      )
      .execute();
    await db.schema.createIndex('pushers_app_key_idx').on('pushers').columns(['app_id', 'pushkey']).execute();
  },
};
