import { addIdColumn } from '../dialect.js';
import type { Migration } from './types.js';

export const m0001: Migration = {
  version: 1,
  name: 'accounts',
  async up(db, engine) {
    await db.schema
      .createTable('users')
      .addColumn('user_id', 'text', (c) => c.primaryKey())
      .addColumn('password_hash', 'text')
      .addColumn('is_admin', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('is_guest', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('deactivated', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('locked', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addColumn('displayname', 'text')
      .addColumn('avatar_url', 'text')
      .addColumn('user_type', 'text')
      .execute();

    await db.schema
      .createTable('devices')
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.user_id').onDelete('cascade'))
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('display_name', 'text')
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addColumn('last_seen_ts', 'bigint')
      .addColumn('last_seen_ip', 'text')
      .addColumn('last_seen_user_agent', 'text')
      .addPrimaryKeyConstraint('devices_pk', ['user_id', 'device_id'])
      .execute();

    for (const table of ['refresh_tokens', 'access_tokens'] as const) {
      let t = addIdColumn(engine, db.schema.createTable(table), 'id')
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('created_ts', 'bigint', (c) => c.notNull())
        .addColumn('expires_ts', 'bigint');
      if (table === 'access_tokens')
        t = t.addColumn('refresh_token_id', 'bigint', (c) =>
          c.references('refresh_tokens.id').onDelete('cascade'),
        );
      await t
        .addForeignKeyConstraint(
          `${table}_device_fk`,
          ['user_id', 'device_id'],
          'devices',
          ['user_id', 'device_id'],
          (c) => c.onDelete('cascade'),
        )
        .execute();
      await db.schema
        .createIndex(`${table}_device_idx`)
        .on(table)
        .columns(['user_id', 'device_id'])
        .execute();
    }

    await db.schema
      .createTable('account_data')
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.user_id').onDelete('cascade'))
      .addColumn('room_id', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('content', 'text', (c) => c.notNull())
      .addColumn('stream_pos', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('account_data_pk', ['user_id', 'room_id', 'type'])
      .execute();
    await db.schema
      .createIndex('account_data_stream_idx')
      .on('account_data')
      .columns(['user_id', 'stream_pos'])
      .execute();

    await db.schema
      .createTable('filters')
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.user_id').onDelete('cascade'))
      .addColumn('filter_id', 'bigint', (c) => c.notNull())
      .addColumn('filter_json', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('filters_pk', ['user_id', 'filter_id'])
      .execute();

    await db.schema
      .createTable('uia_sessions')
      .addColumn('session_id', 'text', (c) => c.primaryKey())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addColumn('completed', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('request_key', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text')
      .execute();

    await db.schema
      .createTable('registration_tokens')
      .addColumn('token', 'text', (c) => c.primaryKey())
      .addColumn('uses_allowed', 'integer')
      .addColumn('pending', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('completed', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('expiry_time', 'bigint')
      .execute();
  },
};
