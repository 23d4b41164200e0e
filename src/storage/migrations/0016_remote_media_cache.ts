import type { Migration } from './types.js';

/**
 * Cached copies of other servers' media (Synapse's remote_media_cache), keyed by (media_origin, media_id). The file
 * lives under remote_content/ by filesystem_id (a random id, so a re-fetch never collides with a file left by a
 * crash); a row always names a complete, fsynced file. Thumbnails of cached media are made locally from the copy.
 */
export const m0016: Migration = {
  version: 16,
  name: 'remote_media_cache',
  async up(db) {
    await db.schema
      .createTable('remote_media_cache')
      .addColumn('media_origin', 'text', (c) => c.notNull())
      .addColumn('media_id', 'text', (c) => c.notNull())
      .addColumn('media_type', 'text', (c) => c.notNull())
      .addColumn('media_length', 'bigint', (c) => c.notNull())
      .addColumn('upload_name', 'text')
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addColumn('last_access_ts', 'bigint', (c) => c.notNull())
      .addColumn('filesystem_id', 'text', (c) => c.notNull().unique())
      .addColumn('sha256', 'text', (c) => c.notNull())
      .addColumn('authenticated', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('remote_media_cache_pk', ['media_origin', 'media_id'])
      .execute();
    await db.schema
      .createIndex('remote_media_cache_access_idx')
      .on('remote_media_cache')
      .column('last_access_ts')
      .execute();
    await db.schema
      .createTable('remote_media_thumbnails')
      .addColumn('media_origin', 'text', (c) => c.notNull())
      .addColumn('media_id', 'text', (c) => c.notNull())
      .addColumn('width', 'integer', (c) => c.notNull())
      .addColumn('height', 'integer', (c) => c.notNull())
      .addColumn('method', 'text', (c) => c.notNull())
      .addColumn('animated', 'integer', (c) => c.notNull())
      .addColumn('content_type', 'text', (c) => c.notNull())
      .addColumn('length', 'bigint', (c) => c.notNull())
      .addColumn('created_ts', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('remote_media_thumbnails_pk', [
        'media_origin',
        'media_id',
        'width',
        'height',
        'method',
        'animated',
      ])
      .addForeignKeyConstraint(
        'remote_media_thumbnails_media_fk',
        ['media_origin', 'media_id'],
        'remote_media_cache',
        ['media_origin', 'media_id'],
        (fk) => fk.onDelete('cascade'),
      )
      .execute();
  },
};
