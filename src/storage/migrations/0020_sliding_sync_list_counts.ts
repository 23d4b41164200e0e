import type { Migration } from './types.js';

/**
 * Sliding sync: each position records the `count` of every list its response carried (JSON object list name →
 * count), so that a later request whose only change is a list's count (a room joined or left outside the window)
 * answers instead of waiting. Null on positions written before.
 */
export const m0020: Migration = {
  version: 20,
  name: 'sliding_sync_list_counts',
  async up(db) {
    await db.schema.alterTable('sliding_sync_positions').addColumn('list_counts', 'text').execute();
  },
};
