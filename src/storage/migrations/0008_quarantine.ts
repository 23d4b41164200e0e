import { addIdColumn } from '../dialect.js';
import type { Migration } from './types.js';

/**
 * Quarantine for `hearth doctor --repair`: nothing it removes is deleted outright. A damaged event moves, whole row
 * included, to quarantined_events; a dangling transaction-id or to-device row moves to quarantined_rows. Edges to
 * events this server never had are recorded in missing_events. Damage reports the doctor has handled are marked
 * resolved.
 */
export const m0008: Migration = {
  version: 8,
  name: 'quarantine',
  async up(db, engine) {
    await db.schema
      .createTable('quarantined_events')
      .addColumn('event_nid', 'bigint', (c) => c.primaryKey())
      .addColumn('event_id', 'text', (c) => c.notNull())
      .addColumn('room_id', 'text', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      // The events row as it was, as JSON (its `json` column included, even when unreadable).
      .addColumn('row_json', 'text', (c) => c.notNull())
      .addColumn('quarantined_ts', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('quarantined_events_event_id_idx')
      .on('quarantined_events')
      .column('event_id')
      .execute();

    await addIdColumn(engine, db.schema.createTable('quarantined_rows'), 'id')
      .addColumn('table_name', 'text', (c) => c.notNull())
      .addColumn('row_json', 'text', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('quarantined_ts', 'bigint', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('missing_events')
      .addColumn('room_nid', 'bigint', (c) => c.notNull())
      .addColumn('event_id', 'text', (c) => c.notNull())
      .addColumn('referenced_by', 'text', (c) => c.notNull())
      .addColumn('recorded_ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('missing_events_pk', ['room_nid', 'event_id'])
      .execute();

    await db.schema.alterTable('damage_reports').addColumn('resolved_ts', 'bigint').execute();
  },
};
