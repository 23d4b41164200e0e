/**
 * The media repository: uploads (direct and async), lookups for downloads, thumbnails (pre-generated at Synapse's
 * default sizes after an upload, other sizes on demand, cached on disk and in the database), quarantine and deletion.
 *
 * Invariant: a `media` row with a non-null media_length names a file that is complete and durable on disk. The file
 * is committed (temp, fsync, link, directory fsync) before the row is written or completed; deletion removes the row
 * before the file. A crash in between leaves an orphan file, never a row without its file.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import { MatrixError, notFound } from '../api/errors.js';
import type { Config } from '../config/schema.js';
import type { Storage } from '../storage/db.js';
import {
  allStoredMedia,
  avatarUrls,
  completeMedia,
  deleteMediaRow,
  getMedia,
  getThumbnail,
  insertMedia,
  insertThumbnail,
  mediaIdsOlderThan,
  pendingUploads,
  setProtected,
  setQuarantine,
  touchMedia,
  type MediaRow,
  type ThumbnailRow,
} from '../storage/media.js';
import { MediaExistsError, MediaStore, MediaTooLargeError } from './store.js';
import {
  canThumbnail,
  DEFAULT_THUMBNAIL_SIZES,
  ImageTooLargeError,
  makeThumbnail,
  ThumbnailError,
  type ThumbnailRequest,
} from './thumbnail.js';

/** Synapse's media id alphabet and length (random_string(24)). */
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const ID_LENGTH = 24;
/** Valid media ids (spec: the opaque id is URL-safe); anything else is a 400. */
export const MEDIA_ID = /^[A-Za-z0-9_-]{1,255}$/;
/** A server name: host name or IP literal, optional port. */
export const SERVER_NAME = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;
/** Largest thumbnail side made on demand; larger requests are clamped. */
export const MAX_THUMBNAIL_SIDE = 2048;
/** last_access_ts is written at most this often per media (Synapse batches these updates too). */
const ACCESS_UPDATE_INTERVAL_MS = 10 * 60_000;

export interface UploadMeta {
  contentType: string;
  fileName: string | null;
}

export interface ServedFile {
  path: string;
  contentType: string;
  length: number;
}

export interface MediaIntegrity {
  /** Content files without a media row (a crash between file commit and row insert, or a failed delete). */
  orphanFiles: string[];
  /** Media rows claiming content whose file is missing or of the wrong size. */
  missingFiles: string[];
}

function newMediaId(): string {
  let id = '';
  for (let i = 0; i < ID_LENGTH; i++) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  return id;
}

export class MediaService {
  readonly store: MediaStore;
  #waiters = new Map<string, Set<() => void>>();
  #jobs = new Set<Promise<unknown>>();
  #generating = new Map<string, Promise<ThumbnailRow>>();
  #accessed = new Map<string, number>();
  #closed = false;

  constructor(
    private readonly deps: { storage: Storage; config: Config; log: Logger },
    store?: MediaStore,
  ) {
    this.store = store ?? new MediaStore(deps.config.media_store_path);
  }

  get #db(): Storage['db'] {
    return this.deps.storage.db;
  }

  /** Prepares the store and removes temp files of uploads a crash interrupted. */
  async init(): Promise<void> {
    const removed = await this.store.init();
    if (removed) this.deps.log.warn({ removed }, 'removed incomplete media uploads left by an earlier run');
  }

  mxc(mediaId: string): string {
    return `mxc://${this.deps.config.server_name}/${mediaId}`;
  }

  /** POST /upload: streams the content to disk, then records it. Returns the new media id. */
  async upload(
    userId: string,
    source: AsyncIterable<Buffer> | Iterable<Buffer>,
    meta: UploadMeta,
  ): Promise<string> {
    const tmp = await this.#receive(source);
    const mediaId = newMediaId();
    const path = this.store.contentPath(mediaId);
    await this.store.commit(tmp, path);
    const now = Date.now();
    try {
      await insertMedia(this.#db, {
        media_id: mediaId,
        user_id: userId,
        created_ts: now,
        media_type: meta.contentType,
        media_length: tmp.length,
        upload_name: meta.fileName,
        unused_expires_at: null,
        authenticated: this.deps.config.enable_authenticated_media ? 1 : 0,
        quarantined_by: null,
        safe_from_quarantine: 0,
        last_access_ts: now,
        sha256: tmp.sha256,
      });
    } catch (err) {
      await this.store.remove(mediaId).catch(() => undefined);
      throw err;
    }
    this.#afterUpload(mediaId, meta.contentType);
    return mediaId;
  }

  /** POST /create: reserves a media id for an async upload. */
  async create(userId: string): Promise<{ mediaId: string; unusedExpiresAt: number }> {
    const now = Date.now();
    const pending = await pendingUploads(this.#db, userId, now);
    const max = this.deps.config.max_pending_media_uploads;
    if (pending.length >= max) {
      const earliest = pending[pending.length - max] ?? now;
      throw new MatrixError('M_LIMIT_EXCEEDED', 'You have too many uploads pending', {
        retry_after_ms: Math.max(0, earliest - now),
      });
    }
    const mediaId = newMediaId();
    const unusedExpiresAt = now + this.deps.config.unused_expiration_time_ms;
    await insertMedia(this.#db, {
      media_id: mediaId,
      user_id: userId,
      created_ts: now,
      media_type: null,
      media_length: null,
      upload_name: null,
      unused_expires_at: unusedExpiresAt,
      authenticated: this.deps.config.enable_authenticated_media ? 1 : 0,
      quarantined_by: null,
      safe_from_quarantine: 0,
      last_access_ts: null,
      sha256: null,
    });
    return { mediaId, unusedExpiresAt };
  }

  /** PUT /upload/{serverName}/{mediaId}: the content of an async upload, once. */
  async uploadTo(
    userId: string,
    mediaId: string,
    source: AsyncIterable<Buffer> | Iterable<Buffer>,
    meta: UploadMeta,
  ): Promise<void> {
    const row = await getMedia(this.#db, mediaId);
    if (!row) throw notFound('Unknown media ID');
    if (row.user_id !== userId)
      throw new MatrixError('M_FORBIDDEN', 'Only the creator of the media ID can upload to it');
    if (row.media_length !== null)
      throw new MatrixError('M_CANNOT_OVERWRITE_MEDIA', 'Media ID already has content');
    if (row.unused_expires_at !== null && Number(row.unused_expires_at) < Date.now()) {
      throw notFound('Media ID has expired');
    }
    const tmp = await this.#receive(source);
    try {
      await this.store.commit(tmp, this.store.contentPath(mediaId));
    } catch (err) {
      if (err instanceof MediaExistsError) {
        throw new MatrixError('M_CANNOT_OVERWRITE_MEDIA', 'Media ID already has content');
      }
      throw err;
    }
    const done = await completeMedia(this.#db, mediaId, {
      media_type: meta.contentType,
      media_length: tmp.length,
      upload_name: meta.fileName,
      sha256: tmp.sha256,
      now: Date.now(),
    });
    if (!done) throw new MatrixError('M_CANNOT_OVERWRITE_MEDIA', 'Media ID already has content');
    for (const wake of this.#waiters.get(mediaId) ?? []) wake();
    this.#afterUpload(mediaId, meta.contentType);
  }

  /**
   * The media row of a download or thumbnail request, waiting up to `timeoutMs` for the content of an async upload.
   * Unknown, expired and quarantined media are 404; content still missing after the wait is 504 M_NOT_YET_UPLOADED.
   */
  async lookup(
    mediaId: string,
    timeoutMs: number,
  ): Promise<MediaRow & { media_type: string; media_length: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = await getMedia(this.#db, mediaId);
      if (!row) throw notFound('Not found');
      if (row.quarantined_by !== null) throw notFound('Not found');
      if (row.media_length !== null && row.media_type !== null) {
        this.#touch(mediaId);
        return { ...row, media_type: row.media_type, media_length: Number(row.media_length) };
      }
      if (row.unused_expires_at !== null && Number(row.unused_expires_at) < Date.now())
        throw notFound('Not found');
      const left = deadline - Date.now();
      if (left <= 0 || this.#closed) {
        throw new MatrixError('M_NOT_YET_UPLOADED', 'Media has not been uploaded yet');
      }
      await this.#waitFor(mediaId, Math.min(left, 5_000));
    }
  }

  /** The cached thumbnail for `req`, made now if it is not cached yet. */
  async thumbnail(row: MediaRow & { media_type: string }, req: ThumbnailRequest): Promise<ServedFile> {
    if (!canThumbnail(row.media_type)) {
      throw new MatrixError('M_UNKNOWN', 'Cannot generate thumbnails for the requested content', {}, 400);
    }
    const key = {
      width: Math.min(Math.max(1, req.width), MAX_THUMBNAIL_SIDE),
      height: Math.min(Math.max(1, req.height), MAX_THUMBNAIL_SIDE),
      method: req.method,
      animated: req.animated,
    };
    const cached = await getThumbnail(this.#db, { mediaId: row.media_id, ...key });
    const thumb = cached ?? (await this.#generate(row.media_id, row.media_type, key));
    return {
      path: this.store.thumbnailPath(row.media_id, key),
      contentType: thumb.content_type,
      length: Number(thumb.length),
    };
  }

  /** Admin: quarantines (by = admin user id) or releases (by = null) media. False when unknown or protected. */
  quarantine(mediaId: string, by: string | null): Promise<boolean> {
    return setQuarantine(this.#db, mediaId, by);
  }

  protect(mediaId: string, safe: boolean): Promise<boolean> {
    return setProtected(this.#db, mediaId, safe);
  }

  /** Deletes media rows, then their files. Returns the ids that existed. */
  async delete(mediaIds: readonly string[]): Promise<string[]> {
    const deleted: string[] = [];
    for (const id of mediaIds) {
      const existed = await this.#db.transaction().execute(async (trx) => {
        const row = await getMedia(trx, id);
        if (!row) return false;
        await deleteMediaRow(trx, id);
        return true;
      });
      if (!existed) continue;
      await this.store
        .remove(id)
        .catch((err: unknown) => this.deps.log.warn({ err, mediaId: id }, 'could not remove media files'));
      deleted.push(id);
    }
    return deleted;
  }

  /** Admin: deletes media last accessed before `beforeTs` (Synapse's delete-by-date). */
  async deleteOlderThan(opts: {
    beforeTs: number;
    sizeGt: number;
    keepProfiles: boolean;
  }): Promise<string[]> {
    const prefix = `mxc://${this.deps.config.server_name}/`;
    const avatars = new Set(
      (await avatarUrls(this.#db)).filter((u) => u.startsWith(prefix)).map((u) => u.slice(prefix.length)),
    );
    const ids = await mediaIdsOlderThan(this.#db, { ...opts, avatarIds: avatars });
    return this.delete(ids);
  }

  /** Compares rows and files (for the doctor). With `repair`, removes orphan files and rows whose file is gone. */
  async checkIntegrity(repair = false): Promise<MediaIntegrity> {
    const rows = await allStoredMedia(this.#db);
    const known = new Set(rows.map((r) => r.media_id));
    const allIds = new Set(
      (await this.#db.selectFrom('media').select('media_id').execute()).map((r) => r.media_id),
    );
    const orphanFiles = (await this.store.contentIds()).filter((id) => !allIds.has(id));
    const missingFiles: string[] = [];
    for (const r of rows) {
      const size = await this.store.size(this.store.contentPath(r.media_id));
      if (size !== r.media_length) missingFiles.push(r.media_id);
    }
    if (repair) {
      for (const id of orphanFiles) if (!known.has(id)) await this.store.remove(id);
      await this.delete(missingFiles);
    }
    return { orphanFiles, missingFiles };
  }

  /** Waits for background thumbnail jobs; later downloads waiting on content answer at once. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const set of this.#waiters.values()) for (const wake of set) wake();
    await Promise.allSettled([...this.#jobs]);
  }

  async #receive(
    source: AsyncIterable<Buffer> | Iterable<Buffer>,
  ): Promise<Awaited<ReturnType<MediaStore['writeTemp']>>> {
    try {
      return await this.store.writeTemp(source, this.deps.config.max_upload_size);
    } catch (err) {
      if (err instanceof MediaTooLargeError) {
        throw new MatrixError('M_TOO_LARGE', `Upload exceeds the limit of ${err.limit} bytes`);
      }
      throw err;
    }
  }

  #waitFor(mediaId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(mediaId);
      if (!set) this.#waiters.set(mediaId, (set = new Set()));
      const waiters = set;
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0 && this.#waiters.get(mediaId) === waiters) this.#waiters.delete(mediaId);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiters.add(done);
    });
  }

  #touch(mediaId: string): void {
    const now = Date.now();
    if (now - (this.#accessed.get(mediaId) ?? 0) < ACCESS_UPDATE_INTERVAL_MS) return;
    if (this.#accessed.size > 100_000) this.#accessed.clear();
    this.#accessed.set(mediaId, now);
    this.#track(touchMedia(this.#db, mediaId, now));
  }

  #track(job: Promise<unknown>): void {
    const p = job.catch((err: unknown) => this.deps.log.warn({ err }, 'media background job failed'));
    this.#jobs.add(p);
    void p.finally(() => this.#jobs.delete(p));
  }

  /** Pre-generates Synapse's default thumbnail sizes of a new image, in the background. */
  #afterUpload(mediaId: string, mediaType: string): void {
    if (!canThumbnail(mediaType) || this.#closed) return;
    this.#track(
      (async () => {
        for (const size of DEFAULT_THUMBNAIL_SIZES) {
          if (this.#closed) return;
          try {
            await this.#generate(mediaId, mediaType, { ...size, animated: false });
          } catch (err) {
            if (err instanceof MatrixError) return; // too large or undecodable: no thumbnails at all
            throw err;
          }
        }
      })(),
    );
  }

  /** Makes, stores and records one thumbnail; concurrent requests for the same one share the work. */
  #generate(mediaId: string, mediaType: string, key: ThumbnailRequest): Promise<ThumbnailRow> {
    const id = `${mediaId}/${key.width}/${key.height}/${key.method}/${key.animated ? 1 : 0}`;
    let job = this.#generating.get(id);
    if (!job) {
      job = this.#doGenerate(mediaId, mediaType, key).finally(() => this.#generating.delete(id));
      this.#generating.set(id, job);
    }
    return job;
  }

  async #doGenerate(mediaId: string, mediaType: string, key: ThumbnailRequest): Promise<ThumbnailRow> {
    const cached = await getThumbnail(this.#db, { mediaId, ...key });
    if (cached) return cached;
    let thumb;
    try {
      thumb = await makeThumbnail(
        this.store.contentPath(mediaId),
        mediaType,
        key,
        this.deps.config.max_image_pixels,
      );
    } catch (err) {
      if (err instanceof ImageTooLargeError) {
        throw new MatrixError('M_TOO_LARGE', 'The local content is too large for the server to thumbnail');
      }
      if (err instanceof ThumbnailError) {
        throw new MatrixError('M_UNKNOWN', 'Cannot generate thumbnails for the requested content', {}, 400);
      }
      throw err;
    }
    const tmp = await this.store.writeTempBuffer(thumb.data);
    const path = this.store.thumbnailPath(mediaId, key);
    try {
      await this.store.commit(tmp, path);
    } catch (err) {
      // Another process made it first: the file is complete either way.
      if (!(err instanceof MediaExistsError)) throw err;
    }
    const row: ThumbnailRow = {
      media_id: mediaId,
      width: key.width,
      height: key.height,
      method: key.method,
      animated: key.animated ? 1 : 0,
      content_type: thumb.contentType,
      length: thumb.data.length,
      created_ts: Date.now(),
    };
    await insertThumbnail(this.#db, row);
    return (await getThumbnail(this.#db, { mediaId, ...key })) ?? row;
  }
}
