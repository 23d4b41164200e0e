import type { Migration } from './types.js';

/**
 * End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys and signatures, to-device
 * messages, device-list changes and server-side key backup.
 *
 * Everything that belongs to a device references `devices` with ON DELETE CASCADE, so deleting a device (logout,
 * device deletion, password change) takes its keys and its pending to-device messages with it. To-device rows and
 * device-list change rows carry a global stream position (src/util/stream.ts) that /sync reads.
 */
export const m0006: Migration = {
  version: 6,
  name: 'e2ee',
  async up(db) {
    await db.schema
      .createTable('e2e_device_keys')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('key_json', 'text', (c) => c.notNull())
      .addColumn('ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('e2e_device_keys_pk', ['user_id', 'device_id'])
      .addForeignKeyConstraint(
        'e2e_device_keys_device_fk',
        ['user_id', 'device_id'],
        'devices',
        ['user_id', 'device_id'],
        (c) => c.onDelete('cascade'),
      )
      .execute();

    await db.schema
      .createTable('e2e_one_time_keys')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('algorithm', 'text', (c) => c.notNull())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('key_json', 'text', (c) => c.notNull())
      .addColumn('ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('e2e_one_time_keys_pk', ['user_id', 'device_id', 'algorithm', 'key_id'])
      .addForeignKeyConstraint(
        'e2e_one_time_keys_device_fk',
        ['user_id', 'device_id'],
        'devices',
        ['user_id', 'device_id'],
        (c) => c.onDelete('cascade'),
      )
      .execute();

    await db.schema
      .createTable('e2e_fallback_keys')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('algorithm', 'text', (c) => c.notNull())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('key_json', 'text', (c) => c.notNull())
      .addColumn('used', 'integer', (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('e2e_fallback_keys_pk', ['user_id', 'device_id', 'algorithm'])
      .addForeignKeyConstraint(
        'e2e_fallback_keys_device_fk',
        ['user_id', 'device_id'],
        'devices',
        ['user_id', 'device_id'],
        (c) => c.onDelete('cascade'),
      )
      .execute();

    await db.schema
      .createTable('e2e_cross_signing_keys')
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.user_id').onDelete('cascade'))
      .addColumn('key_type', 'text', (c) => c.notNull())
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('key_json', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('e2e_cross_signing_keys_pk', ['user_id', 'key_type'])
      .execute();

    // A signature by `signer_user_id`'s key `signer_key_id` of the target user's device or cross-signing key
    // (`target_key_id` is a device id or a cross-signing public key).
    await db.schema
      .createTable('e2e_signatures')
      .addColumn('signer_user_id', 'text', (c) => c.notNull())
      .addColumn('signer_key_id', 'text', (c) => c.notNull())
      .addColumn('target_user_id', 'text', (c) => c.notNull())
      .addColumn('target_key_id', 'text', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('e2e_signatures_pk', [
        'target_user_id',
        'target_key_id',
        'signer_user_id',
        'signer_key_id',
      ])
      .execute();

    await db.schema
      .createTable('to_device_messages')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('stream_pos', 'bigint', (c) => c.notNull())
      .addColumn('sender', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('content', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('to_device_messages_pk', ['user_id', 'device_id', 'stream_pos'])
      .addForeignKeyConstraint(
        'to_device_messages_device_fk',
        ['user_id', 'device_id'],
        'devices',
        ['user_id', 'device_id'],
        (c) => c.onDelete('cascade'),
      )
      .execute();

    // The sending device's transaction ids: a retried PUT /sendToDevice is not delivered twice.
    await db.schema
      .createTable('to_device_txns')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('txn_id', 'text', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('to_device_txns_pk', ['user_id', 'device_id', 'txn_id'])
      .addForeignKeyConstraint(
        'to_device_txns_device_fk',
        ['user_id', 'device_id'],
        'devices',
        ['user_id', 'device_id'],
        (c) => c.onDelete('cascade'),
      )
      .execute();

    // One row per change of a user's devices or cross-signing keys. `only_self` rows (user-signing key and
    // signature changes) concern the user alone, as in Synapse.
    await db.schema
      .createTable('device_list_changes')
      .addColumn('stream_pos', 'bigint', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('only_self', 'integer', (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('device_list_changes_pk', ['stream_pos', 'user_id'])
      .execute();
    await db.schema
      .createIndex('device_list_changes_user_idx')
      .on('device_list_changes')
      .columns(['user_id', 'stream_pos'])
      .execute();

    await db.schema
      .createTable('room_key_versions')
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.user_id').onDelete('cascade'))
      .addColumn('version', 'bigint', (c) => c.notNull())
      .addColumn('algorithm', 'text', (c) => c.notNull())
      .addColumn('auth_data', 'text', (c) => c.notNull())
      .addColumn('etag', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('deleted', 'integer', (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('room_key_versions_pk', ['user_id', 'version'])
      .execute();

    await db.schema
      .createTable('room_keys')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('version', 'bigint', (c) => c.notNull())
      .addColumn('room_id', 'text', (c) => c.notNull())
      .addColumn('session_id', 'text', (c) => c.notNull())
      .addColumn('first_message_index', 'bigint', (c) => c.notNull())
      .addColumn('forwarded_count', 'bigint', (c) => c.notNull())
      .addColumn('is_verified', 'integer', (c) => c.notNull())
      .addColumn('session_data', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('room_keys_pk', ['user_id', 'version', 'room_id', 'session_id'])
      .addForeignKeyConstraint(
        'room_keys_version_fk',
        ['user_id', 'version'],
        'room_key_versions',
        ['user_id', 'version'],
        (c) => c.onDelete('cascade'),
      )
      .execute();
  },
};
