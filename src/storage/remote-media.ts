/** Cached copies of other servers' media and the thumbnails made from them. */
import type { Insertable, Selectable } from 'kysely';
import type { RemoteMediaCacheTable, RemoteMediaThumbnailsTable } from './schema.js';
import type { Executor } from './users.js';

export type RemoteMediaRow = Selectable<RemoteMediaCacheTable>;
export type RemoteThumbnailRow = Selectable<RemoteMediaThumbnailsTable>;

export interface RemoteMediaKey {
  origin: string;
  mediaId: string;
}

export interface RemoteThumbnailKey extends RemoteMediaKey {
  width: number;
  height: number;
  method: string;
  animated: boolean;
}

export async function getRemoteMedia(db: Executor, key: RemoteMediaKey): Promise<RemoteMediaRow | undefined> {
  const row = await db
    .selectFrom('remote_media_cache')
    .selectAll()
    .where('media_origin', '=', key.origin)
    .where('media_id', '=', key.mediaId)
    .executeTakeFirst();
  return (
    row && { ...row, media_length: Number(row.media_length), last_access_ts: Number(row.last_access_ts) }
  );
}

/** Records a cached copy; false when another fetch recorded it first (that row stands). */
export async function insertRemoteMedia(
  db: Executor,
  row: Insertable<RemoteMediaCacheTable>,
): Promise<boolean> {
  const res = await db
    .insertInto('remote_media_cache')
    .values(row)
    .onConflict((oc) => oc.columns(['media_origin', 'media_id']).doNothing())
    .executeTakeFirst();
  return Number(res.numInsertedOrUpdatedRows ?? 0) === 1;
}

export async function touchRemoteMedia(db: Executor, key: RemoteMediaKey, now: number): Promise<void> {
  await db
    .updateTable('remote_media_cache')
    .set({ last_access_ts: now })
    .where('media_origin', '=', key.origin)
    .where('media_id', '=', key.mediaId)
    .execute();
}

/** Deletes a cached copy's row and its thumbnail rows (the files are the caller's). */
export async function deleteRemoteMedia(db: Executor, key: RemoteMediaKey): Promise<void> {
  await db
    .deleteFrom('remote_media_thumbnails')
    .where('media_origin', '=', key.origin)
    .where('media_id', '=', key.mediaId)
    .execute();
  await db
    .deleteFrom('remote_media_cache')
    .where('media_origin', '=', key.origin)
    .where('media_id', '=', key.mediaId)
    .execute();
}

/** Cached copies last accessed before `beforeTs` (Synapse's purge_media_cache). */
export async function remoteMediaAccessedBefore(db: Executor, beforeTs: number): Promise<RemoteMediaRow[]> {
  const rows = await db
    .selectFrom('remote_media_cache')
    .selectAll()
    .where('last_access_ts', '<', beforeTs)
    .execute();
  return rows.map((r) => ({
    ...r,
    media_length: Number(r.media_length),
    last_access_ts: Number(r.last_access_ts),
  }));
}

/** Every cached copy's file id and length, for the integrity check against the files on disk. */
export async function allRemoteMedia(db: Executor): Promise<RemoteMediaRow[]> {
  return remoteMediaAccessedBefore(db, Number.MAX_SAFE_INTEGER);
}

export async function getRemoteThumbnail(
  db: Executor,
  key: RemoteThumbnailKey,
): Promise<RemoteThumbnailRow | undefined> {
  return db
    .selectFrom('remote_media_thumbnails')
    .selectAll()
    .where('media_origin', '=', key.origin)
    .where('media_id', '=', key.mediaId)
    .where('width', '=', key.width)
    .where('height', '=', key.height)
    .where('method', '=', key.method)
    .where('animated', '=', key.animated ? 1 : 0)
    .executeTakeFirst();
}

export async function insertRemoteThumbnail(
  db: Executor,
  row: Insertable<RemoteMediaThumbnailsTable>,
): Promise<void> {
  await db
    .insertInto('remote_media_thumbnails')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['media_origin', 'media_id', 'width', 'height', 'method', 'animated']).doNothing(),
    )
    .execute();
}
