import type { Migration } from './types.js';

/**
 * The media repository. A `media` row with a non-null media_length always has its file on disk (the file is written,
 * fsynced and renamed into place before the row says so); a row with a null media_length is an async upload created
 * with /create whose content has not arrived yet. Thumbnails are keyed by the parameters they were made for.
 */
export const m0007: Migration = {
  version: 7,
  name: 'media',
  async up(db) {
    await db.schema
      .createTable('media')
      .addColumn('media_id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addColumn('media_type', 'text')
      .addColumn('media_length', 'bigint')
      .addColumn('upload_name', 'text')
      .addColumn('unused_expires_at', 'bigint')
      .addColumn('authenticated', 'integer', (c) => c.notNull())
      .addColumn('quarantined_by', 'text')
      .addColumn('safe_from_quarantine', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('last_access_ts', 'bigint')
      .addColumn('sha256', 'text')
      .execute();
    await db.schema.createIndex('media_user_idx').on('media').columns(['user_id', 'created_ts']).execute();
    await db.schema.createIndex('media_access_idx').on('media').column('last_access_ts').execute();
    await db.schema
      .createTable('media_thumbnails')
      .addColumn('media_id', 'text', (c) => c.notNull().references('media.media_id').onDelete('cascade'))
      .addColumn('width', 'integer', (c) => c.notNull())
      .addColumn('height', 'integer', (c) => c.notNull())
      .addColumn('method', 'text', (c) => c.notNull())
      .addColumn('animated', 'integer', (c) => c.notNull())
      .addColumn('content_type', 'text', (c) => c.notNull())
      .addColumn('length', 'bigint', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('media_thumbnails_pk', ['media_id', 'width', 'height', 'method', 'animated'])
      .execute();
  },
};
