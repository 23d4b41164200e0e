import type { Migration } from './types.js';

/**
 * Rooms an application service published in its own third-party network's room directory (Synapse's
 * appservice_room_list): PUT /directory/list/appservice/{networkId}/{roomId}.
 */
export const m0019: Migration = {
  version: 19,
  name: 'appservice_room_list',
  async up(db) {
    await db.schema
      .createTable('appservice_room_list')
      .addColumn('as_id', 'text', (c) => c.notNull())
      .addColumn('network_id', 'text', (c) => c.notNull())
      .addColumn('room_id', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('appservice_room_list_pk', ['as_id', 'network_id', 'room_id'])
      .execute();
    await db.schema
      .createIndex('appservice_room_list_room_idx')
      .on('appservice_room_list')
      .column('room_id')
      .execute();
  },
};
