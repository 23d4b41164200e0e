/** Media repository rows: uploaded media and their cached thumbnails. */
import type { Insertable, Selectable } from 'kysely';
import type { MediaTable, MediaThumbnailsTable } from './schema.js';
import type { Executor } from './users.js';

export type MediaRow = Selectable<MediaTable>;
export type ThumbnailRow = Selectable<MediaThumbnailsTable>;

export async function insertMedia(db: Executor, row: Insertable<MediaTable>): Promise<void> {
  await db.insertInto('media').values(row).execute();
}

export async function getMedia(db: Executor, mediaId: string): Promise<MediaRow | undefined> {
  return db.selectFrom('media').selectAll().where('media_id', '=', mediaId).executeTakeFirst();
}

/** Records the content of an async upload; false when it already had content (or does not exist). */
export async function completeMedia(
  db: Executor,
  mediaId: string,
  content: {
    media_type: string;
    media_length: number;
    upload_name: string | null;
    sha256: string;
    now: number;
  },
): Promise<boolean> {
  const res = await db
    .updateTable('media')
    .set({
      media_type: content.media_type,
      media_length: content.media_length,
      upload_name: content.upload_name,
      sha256: content.sha256,
      unused_expires_at: null,
      last_access_ts: content.now,
    })
    .where('media_id', '=', mediaId)
    .where('media_length', 'is', null)
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

/** Async uploads of `userId` still waiting for content; the earliest deadline first. */
export async function pendingUploads(db: Executor, userId: string, now: number): Promise<number[]> {
  const rows = await db
    .selectFrom('media')
    .select('unused_expires_at')
    .where('user_id', '=', userId)
    .where('media_length', 'is', null)
    .where('unused_expires_at', '>', now)
    .orderBy('unused_expires_at')
    .execute();
  return rows.map((r) => Number(r.unused_expires_at));
}

export async function touchMedia(db: Executor, mediaId: string, now: number): Promise<void> {
  await db.updateTable('media').set({ last_access_ts: now }).where('media_id', '=', mediaId).execute();
}

export async function setQuarantine(db: Executor, mediaId: string, by: string | null): Promise<boolean> {
  const res = await db
    .updateTable('media')
    .set({ quarantined_by: by })
    .where('media_id', '=', mediaId)
    .$if(by !== null, (q) => q.where('safe_from_quarantine', '=', 0))
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

export async function setProtected(db: Executor, mediaId: string, safe: boolean): Promise<boolean> {
  const res = await db
    .updateTable('media')
    .set({ safe_from_quarantine: safe ? 1 : 0 })
    .where('media_id', '=', mediaId)
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

/** Deletes a media row and its thumbnail rows; returns the thumbnails it had (their files are the caller's). */
export async function deleteMediaRow(db: Executor, mediaId: string): Promise<ThumbnailRow[]> {
  const thumbs = await db
    .selectFrom('media_thumbnails')
    .selectAll()
    .where('media_id', '=', mediaId)
    .execute();
  await db.deleteFrom('media_thumbnails').where('media_id', '=', mediaId).execute();
  await db.deleteFrom('media').where('media_id', '=', mediaId).execute();
  return thumbs;
}

/**
 * Ids of media last accessed (or, never accessed, created) before `beforeTs` and larger than `sizeGt` bytes, as
 * Synapse's "delete local media by date" selects them: protected media is kept, and so are avatars with keepProfiles.
 */
export async function mediaIdsOlderThan(
  db: Executor,
  opts: { beforeTs: number; sizeGt: number; keepProfiles: boolean; avatarIds: ReadonlySet<string> },
): Promise<string[]> {
  const rows = await db
    .selectFrom('media')
    .select('media_id')
    .where((eb) =>
      eb.or([
        eb('last_access_ts', '<', opts.beforeTs),
        eb.and([eb('last_access_ts', 'is', null), eb('created_ts', '<', opts.beforeTs)]),
      ]),
    )
    .where((eb) => eb.or([eb('media_length', '>', opts.sizeGt), eb('media_length', 'is', null)]))
    .where('safe_from_quarantine', '=', 0)
    .execute();
  const ids = rows.map((r) => r.media_id);
  return opts.keepProfiles ? ids.filter((id) => !opts.avatarIds.has(id)) : ids;
}

/** Avatar URLs of local users (`mxc://...`), for keep_profiles. */
export async function avatarUrls(db: Executor): Promise<string[]> {
  const rows = await db
    .selectFrom('users')
    .select('avatar_url')
    .where('avatar_url', 'is not', null)
    .execute();
  return rows.map((r) => r.avatar_url as string);
}

export async function getThumbnail(
  db: Executor,
  key: { mediaId: string; width: number; height: number; method: string; animated: boolean },
): Promise<ThumbnailRow | undefined> {
  return db
    .selectFrom('media_thumbnails')
    .selectAll()
    .where('media_id', '=', key.mediaId)
    .where('width', '=', key.width)
    .where('height', '=', key.height)
    .where('method', '=', key.method)
    .where('animated', '=', key.animated ? 1 : 0)
    .executeTakeFirst();
}

export async function insertThumbnail(db: Executor, row: Insertable<MediaThumbnailsTable>): Promise<void> {
  await db
    .insertInto('media_thumbnails')
    .values(row)
    .onConflict((oc) => oc.columns(['media_id', 'width', 'height', 'method', 'animated']).doNothing())
    .execute();
}

/** Every media id with content, for the integrity check against the files on disk. */
export async function allStoredMedia(db: Executor): Promise<{ media_id: string; media_length: number }[]> {
  const rows = await db
    .selectFrom('media')
    .select(['media_id', 'media_length'])
    .where('media_length', 'is not', null)
    .execute();
  return rows.map((r) => ({ media_id: r.media_id, media_length: Number(r.media_length) }));
}
