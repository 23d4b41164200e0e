import type { Migration } from './types.js';

/**
 * User-interactive auth sessions keep the parameters of the request that started them (`params`, the body minus
 * `auth` and secrets) and data the operation attaches to them (`data`: the registered user id, a password hash), so
 * a later request of the session may carry only `auth` and a completed session can be replayed (SyTest's
 * "registration remembers parameters" and "registration is idempotent"). OpenID tokens for
 * /user/{userId}/openid/request_token are stored as sha256 hashes with their expiry.
 */
export const m0011: Migration = {
  version: 11,
  name: 'uia_params_openid',
  async up(db) {
    await db.schema
      .alterTable('uia_sessions')
      .addColumn('params', 'text', (c) => c.notNull().defaultTo('{}'))
      .execute();
    await db.schema
      .alterTable('uia_sessions')
      .addColumn('data', 'text', (c) => c.notNull().defaultTo('{}'))
      .execute();
    await db.schema
      .createTable('openid_tokens')
      .addColumn('token_hash', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('expires_ts', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('openid_tokens_expiry_idx')
      .on('openid_tokens')
      .column('expires_ts')
      .execute();
  },
};
