import { addIdColumn } from '../dialect.js';
import type { Migration } from './types.js';

/**
 * Matrix v1.14–v1.18 client-server additions:
 * - `user_reports`: POST /users/{userId}/report (beside `event_reports`, which needs a room);
 * - `profile_fields`: custom profile fields (v1.16), one row per user and key, the value as JSON text;
 * - `user_suspensions`: accounts suspended through PUT /admin/suspend/{userId} (v1.18).
 */
export const m0021: Migration = {
  version: 21,
  name: 'user_reports_profile_fields',
  async up(db, engine) {
    await addIdColumn(engine, db.schema.createTable('user_reports'), 'id')
      .addColumn('target_user_id', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('received_ts', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('user_reports_target_idx')
      .on('user_reports')
      .column('target_user_id')
      .execute();
    await db.schema
      .createTable('profile_fields')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('field', 'text', (c) => c.notNull())
      .addColumn('value_json', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('profile_fields_pk', ['user_id', 'field'])
      .execute();
    await db.schema
      .createTable('user_suspensions')
      .addColumn('user_id', 'text', (c) => c.primaryKey())
      .addColumn('suspended_ts', 'bigint', (c) => c.notNull())
      .execute();
  },
};
