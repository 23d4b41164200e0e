import type { Migration } from './types.js';

/**
 * Other servers' signing keys. `server_verify_keys` holds every verify key learnt (directly or from a notary), each
 * with the time until which it may be used: the response's valid_until_ts (capped at 7 days after the fetch) for a
 * current key, expired_ts for an old one. Old keys are kept: events signed long ago are checked with them.
 * `server_key_responses` keeps the latest /_matrix/key/v2/server answer fetched from each server itself, as
 * received (with its own signature), so that this server can act as a notary for it.
 */
export const m0012: Migration = {
  version: 12,
  name: 'federation_keys',
  async up(db) {
    await db.schema
      .createTable('server_verify_keys')
      .addColumn('server_name', 'text', (c) => c.notNull())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('verify_key', 'text', (c) => c.notNull())
      .addColumn('valid_until_ts', 'bigint', (c) => c.notNull())
      .addColumn('expired_ts', 'bigint')
      .addColumn('from_server', 'text', (c) => c.notNull())
      .addColumn('fetched_ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('server_verify_keys_pk', ['server_name', 'key_id'])
      .execute();
    await db.schema
      .createTable('server_key_responses')
      .addColumn('server_name', 'text', (c) => c.primaryKey())
      .addColumn('json', 'text', (c) => c.notNull())
      .addColumn('valid_until_ts', 'bigint', (c) => c.notNull())
      .addColumn('fetched_ts', 'bigint', (c) => c.notNull())
      .execute();
  },
};
