import type { Migration } from './types.js';

/**
 * Events this server did not author. `rejected_reason`: the event failed the authorization rules (against its auth
 * events or the state before it); it is kept so it is never fetched or checked again, but never enters a state, a
 * timeline or the forward extremities. `soft_failed`: the event passed the rules against the state before it but not
 * against the room's current state; kept in the graph (later events may cite it), never shown to clients.
 * Both are stored with `outlier = 1` (no stream position); their `state_snapshot_nid` is the state before them when
 * it is known.
 */
export const m0014: Migration = {
  version: 14,
  name: 'federation_events',
  async up(db) {
    await db.schema.alterTable('events').addColumn('rejected_reason', 'text').execute();
    await db.schema
      .alterTable('events')
      .addColumn('soft_failed', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};
