import { sql } from 'kysely';
import { addIdColumn } from '../dialect.js';
import type { Migration } from './types.js';

/**
 * The event graph and room state.
 *
 * The origin failure of Hearth (an event with no JSON and no state mapping) is unrepresentable here: the JSON is a
 * NOT NULL column of the event row itself, and a CHECK makes the state snapshot and stream ordering mandatory for
 * every event that is not an outlier.
 */
export const m0002: Migration = {
  version: 2,
  name: 'rooms',
  async up(db, engine) {
    await addIdColumn(engine, db.schema.createTable('rooms'), 'room_nid')
      .addColumn('room_id', 'text', (c) => c.notNull().unique())
      .addColumn('room_version', 'text', (c) => c.notNull())
      .addColumn('creator', 'text', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addColumn('is_public', 'integer', (c) => c.notNull().defaultTo(0))
      // State after the forward extremities; NULL only while the create event is being written.
      .addColumn('current_snapshot_nid', 'bigint')
      .execute();

    await addIdColumn(engine, db.schema.createTable('state_snapshots'), 'snapshot_nid')
      .addColumn('room_nid', 'bigint', (c) => c.notNull().references('rooms.room_nid').onDelete('cascade'))
      // A snapshot is its parent plus its own entries; chain_len bounds the walk to the full snapshot at the root.
      .addColumn('parent_nid', 'bigint', (c) => c.references('state_snapshots.snapshot_nid'))
      .addColumn('chain_len', 'integer', (c) => c.notNull())
      .execute();

    await addIdColumn(engine, db.schema.createTable('events'), 'event_nid')
      .addColumn('event_id', 'text', (c) => c.notNull().unique())
      .addColumn('room_nid', 'bigint', (c) => c.notNull().references('rooms.room_nid').onDelete('cascade'))
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('state_key', 'text')
      .addColumn('sender', 'text', (c) => c.notNull())
      .addColumn('depth', 'bigint', (c) => c.notNull())
      .addColumn('origin_server_ts', 'bigint', (c) => c.notNull())
      .addColumn('stream_ordering', 'bigint', (c) => c.unique())
      .addColumn('json', 'text', (c) => c.notNull())
      // The state before this event.
      .addColumn('state_snapshot_nid', 'bigint', (c) => c.references('state_snapshots.snapshot_nid'))
      .addColumn('outlier', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('contains_url', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('redacted_by', 'text')
      .addCheckConstraint(
        'events_not_outlier_has_state',
        sql`outlier = 1 OR (state_snapshot_nid IS NOT NULL AND stream_ordering IS NOT NULL)`,
      )
      .execute();
    await db.schema
      .createIndex('events_room_stream_idx')
      .on('events')
      .columns(['room_nid', 'stream_ordering'])
      .execute();
    await db.schema
      .createIndex('events_room_ts_idx')
      .on('events')
      .columns(['room_nid', 'origin_server_ts'])
      .execute();

    await db.schema
      .createTable('state_snapshot_entries')
      .addColumn('snapshot_nid', 'bigint', (c) =>
        c.notNull().references('state_snapshots.snapshot_nid').onDelete('cascade'),
      )
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('state_key', 'text', (c) => c.notNull())
      .addColumn('event_nid', 'bigint', (c) => c.notNull().references('events.event_nid'))
      .addPrimaryKeyConstraint('state_snapshot_entries_pk', ['snapshot_nid', 'type', 'state_key'])
      .execute();

    await db.schema
      .createTable('current_state')
      .addColumn('room_nid', 'bigint', (c) => c.notNull().references('rooms.room_nid').onDelete('cascade'))
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('state_key', 'text', (c) => c.notNull())
      .addColumn('event_nid', 'bigint', (c) => c.notNull().references('events.event_nid'))
      .addPrimaryKeyConstraint('current_state_pk', ['room_nid', 'type', 'state_key'])
      .execute();

    await db.schema
      .createTable('room_members')
      .addColumn('room_nid', 'bigint', (c) => c.notNull().references('rooms.room_nid').onDelete('cascade'))
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('membership', 'text', (c) => c.notNull())
      .addColumn('event_nid', 'bigint', (c) => c.notNull().references('events.event_nid'))
      .addColumn('stream_ordering', 'bigint', (c) => c.notNull())
      .addColumn('forgotten', 'integer', (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('room_members_pk', ['room_nid', 'user_id'])
      .execute();
    await db.schema
      .createIndex('room_members_user_idx')
      .on('room_members')
      .columns(['user_id', 'membership'])
      .execute();

    await db.schema
      .createTable('forward_extremities')
      .addColumn('room_nid', 'bigint', (c) => c.notNull().references('rooms.room_nid').onDelete('cascade'))
      .addColumn('event_nid', 'bigint', (c) => c.notNull().references('events.event_nid'))
      .addPrimaryKeyConstraint('forward_extremities_pk', ['room_nid', 'event_nid'])
      .execute();

    for (const [table, col] of [
      ['event_edges', 'prev_event_id'],
      ['event_auth_edges', 'auth_event_id'],
    ] as const) {
      await db.schema
        .createTable(table)
        .addColumn('event_nid', 'bigint', (c) =>
          c.notNull().references('events.event_nid').onDelete('cascade'),
        )
        .addColumn(col, 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint(`${table}_pk`, ['event_nid', col])
        .execute();
      await db.schema.createIndex(`${table}_target_idx`).on(table).column(col).execute();
    }

    await db.schema
      .createTable('event_txn_ids')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('txn_id', 'text', (c) => c.notNull())
      .addColumn('event_nid', 'bigint', (c) => c.notNull().references('events.event_nid').onDelete('cascade'))
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('event_txn_ids_pk', ['user_id', 'device_id', 'txn_id'])
      .execute();

    await db.schema
      .createTable('event_relations')
      .addColumn('event_nid', 'bigint', (c) =>
        c.primaryKey().references('events.event_nid').onDelete('cascade'),
      )
      .addColumn('relates_to_id', 'text', (c) => c.notNull())
      .addColumn('rel_type', 'text', (c) => c.notNull())
      .addColumn('aggregation_key', 'text')
      .execute();
    await db.schema
      .createIndex('event_relations_target_idx')
      .on('event_relations')
      .columns(['relates_to_id', 'rel_type'])
      .execute();

    await db.schema
      .createTable('room_aliases')
      .addColumn('alias', 'text', (c) => c.primaryKey())
      .addColumn('room_id', 'text', (c) => c.notNull())
      .addColumn('creator', 'text', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('room_aliases_room_idx').on('room_aliases').column('room_id').execute();

    await addIdColumn(engine, db.schema.createTable('event_reports'), 'id')
      .addColumn('room_id', 'text', (c) => c.notNull())
      .addColumn('event_id', 'text')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('score', 'integer')
      .addColumn('received_ts', 'bigint', (c) => c.notNull())
      .execute();
  },
};
