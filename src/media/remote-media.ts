/**
 * Other servers' media, served to local clients from a cached copy: the first request for `mxc://{origin}/{id}`
 * downloads it from the origin (remote-fetch.ts), later ones read the copy without contacting the origin. Concurrent
 * requests for the same media share one download. Thumbnails are made here from the cached original (Synapse's
 * default, dynamic thumbnails of remote media), not asked of the origin, and cached like local ones.
 *
 * Files live under `remote_content/` and `remote_thumbnails/`, named by a random filesystem id, written as local media
 * are (temp, fsync, link, directory fsync) before their row; a row always names a complete file. A cached file found
 * missing or truncated is dropped and fetched again: the origin still has it.
 */
import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { MatrixError, notFound } from '../api/errors.js';
import type { Config } from '../config/schema.js';
import type { FederationClient } from '../federation/client.js';
import type { Storage } from '../storage/db.js';
import {
  allRemoteMedia,
  deleteRemoteMedia,
  getRemoteMedia,
  getRemoteThumbnail,
  insertRemoteMedia,
  insertRemoteThumbnail,
  remoteMediaAccessedBefore,
  touchRemoteMedia,
  type RemoteMediaKey,
  type RemoteMediaRow,
  type RemoteThumbnailRow,
} from '../storage/remote-media.js';
import { RemoteMediaFetcher } from './remote-fetch.js';
import { MAX_THUMBNAIL_SIDE, type ServedFile } from './service.js';
import { MediaExistsError, type MediaStore, type ThumbnailKey } from './store.js';
import {
  canThumbnail,
  ImageTooLargeError,
  makeThumbnail,
  ThumbnailError,
  type ThumbnailRequest,
} from './thumbnail.js';

/** last_access_ts is written at most this often per media. */
const ACCESS_UPDATE_INTERVAL_MS = 10 * 60_000;

export interface RemoteMediaDeps {
  storage: Storage;
  config: Config;
  log: Logger;
  client: FederationClient;
  store: MediaStore;
}

export interface RemoteMediaIntegrity {
  /** Files under remote_content without a cache row. */
  orphanFiles: string[];
  /** Cache rows (`origin/mediaId`) whose file is missing or of the wrong size. */
  missingFiles: string[];
}

function shard(id: string): string[] {
  return [id.slice(0, 2), id.slice(2, 4), id.slice(4) || '_'];
}

function keyOf(row: RemoteMediaRow): RemoteMediaKey {
  return { origin: row.media_origin, mediaId: row.media_id };
}

/** What the cache's files and the doctor's check need (no federation). */
export interface RemoteMediaFilesDeps {
  storage: Storage;
  store: MediaStore;
  log: Pick<Logger, 'warn'>;
}
type FilesDeps = RemoteMediaFilesDeps;

export function remoteContentPath(store: MediaStore, filesystemId: string): string {
  return join(store.root, 'remote_content', ...shard(filesystemId));
}

function remoteThumbnailDir(store: MediaStore, filesystemId: string): string {
  return join(store.root, 'remote_thumbnails', ...shard(filesystemId));
}

async function removeFiles(deps: FilesDeps, filesystemId: string): Promise<void> {
  try {
    await rm(remoteContentPath(deps.store, filesystemId), { force: true });
    await rm(remoteThumbnailDir(deps.store, filesystemId), { force: true, recursive: true });
  } catch (err) {
    deps.log.warn({ err, filesystem_id: filesystemId }, 'could not remove cached remote media files');
  }
}

/** Deletes the rows, then the files (a crash in between leaves orphan files, never a row without its file). */
async function drop(deps: FilesDeps, row: RemoteMediaRow): Promise<void> {
  await deps.storage.db.transaction().execute((trx) => deleteRemoteMedia(trx, keyOf(row)));
  await removeFiles(deps, row.filesystem_id);
}

/** Filesystem ids that have a file under remote_content. */
async function contentFileIds(store: MediaStore): Promise<string[]> {
  const base = join(store.root, 'remote_content');
  const list = async (p: string): Promise<string[]> => {
    try {
      return await readdir(p);
    } catch {
      return [];
    }
  };
  const out: string[] = [];
  for (const a of await list(base)) {
    for (const b of await list(join(base, a))) {
      for (const rest of await list(join(base, a, b))) out.push(a + b + (rest === '_' ? '' : rest));
    }
  }
  return out;
}

/**
 * Compares cache rows and files (for the doctor; needs no federation). With `repair`, removes orphan files and drops
 * rows whose file is missing (the media is fetched again on its next request).
 */
export async function checkRemoteMediaIntegrity(
  deps: FilesDeps,
  repair = false,
): Promise<RemoteMediaIntegrity> {
  const rows = await allRemoteMedia(deps.storage.db);
  const byFile = new Set(rows.map((r) => r.filesystem_id));
  const orphanFiles = (await contentFileIds(deps.store)).filter((id) => !byFile.has(id));
  const missing: RemoteMediaRow[] = [];
  for (const r of rows) {
    if ((await deps.store.size(remoteContentPath(deps.store, r.filesystem_id))) !== r.media_length)
      missing.push(r);
  }
  if (repair) {
    for (const id of orphanFiles) await removeFiles(deps, id);
    for (const r of missing) await drop(deps, r);
  }
  return { orphanFiles, missingFiles: missing.map((r) => `${r.media_origin}/${r.media_id}`) };
}

export class RemoteMediaCache {
  readonly #fetcher: RemoteMediaFetcher;
  #fetching = new Map<string, Promise<RemoteMediaRow>>();
  #generating = new Map<string, Promise<RemoteThumbnailRow>>();
  #accessed = new Map<string, number>();

  constructor(private readonly deps: RemoteMediaDeps) {
    this.#fetcher = new RemoteMediaFetcher({
      client: deps.client,
      log: deps.log,
      maxBytes: deps.config.max_upload_size,
    });
  }

  get #db(): Storage['db'] {
    return this.deps.storage.db;
  }

  contentPath(filesystemId: string): string {
    return remoteContentPath(this.deps.store, filesystemId);
  }

  thumbnailPath(filesystemId: string, key: ThumbnailKey): string {
    const name = `${key.width}-${key.height}-${key.method}${key.animated ? '-animated' : ''}`;
    return join(remoteThumbnailDir(this.deps.store, filesystemId), name);
  }

  /**
   * The cached copy of `mxc://{origin}/{mediaId}`; without one, downloaded from the origin when `fetch` is true, else
   * 404. A server outside federation_domain_whitelist is 403 M_FORBIDDEN.
   */
  async get(
    origin: string,
    mediaId: string,
    opts: { timeoutMs: number; fetch: boolean },
  ): Promise<RemoteMediaRow> {
    const key = { origin, mediaId };
    const cached = await this.#cached(key);
    if (cached) return cached;
    if (!opts.fetch) throw notFound('Not found');
    if (!this.deps.client.allowsServer(origin))
      throw new MatrixError('M_FORBIDDEN', `Federation denied with ${origin}`);
    const id = `${origin}/${mediaId}`;
    let job = this.#fetching.get(id);
    if (!job) {
      job = this.#fetch(key, opts.timeoutMs).finally(() => this.#fetching.delete(id));
      this.#fetching.set(id, job);
    }
    return job;
  }

  /** The cached thumbnail of a cached remote file for `req`, made now if it is not cached yet. */
  async thumbnail(row: RemoteMediaRow, req: ThumbnailRequest): Promise<ServedFile> {
    if (!canThumbnail(row.media_type)) {
      throw new MatrixError('M_UNKNOWN', 'Cannot generate thumbnails for the requested content', {}, 400);
    }
    const key = {
      width: Math.min(Math.max(1, req.width), MAX_THUMBNAIL_SIDE),
      height: Math.min(Math.max(1, req.height), MAX_THUMBNAIL_SIDE),
      method: req.method,
      animated: req.animated,
    };
    const cached = await getRemoteThumbnail(this.#db, { ...keyOf(row), ...key });
    const thumb = cached ?? (await this.#generate(row, key));
    return {
      path: this.thumbnailPath(row.filesystem_id, key),
      contentType: thumb.content_type,
      length: Number(thumb.length),
    };
  }

  /** Admin (Synapse's purge_media_cache): drops cached copies last accessed before `beforeTs`. Returns how many. */
  async purge(beforeTs: number): Promise<number> {
    const rows = await remoteMediaAccessedBefore(this.#db, beforeTs);
    for (const row of rows) await this.#drop(row);
    return rows.length;
  }

  checkIntegrity(repair = false): Promise<RemoteMediaIntegrity> {
    return checkRemoteMediaIntegrity(this.deps, repair);
  }

  async #cached(key: RemoteMediaKey): Promise<RemoteMediaRow | undefined> {
    const row = await getRemoteMedia(this.#db, key);
    if (!row) return undefined;
    const size = await this.deps.store.size(this.contentPath(row.filesystem_id));
    if (size === row.media_length) {
      this.#touch(key);
      return row;
    }
    this.deps.log.warn(
      { origin: key.origin, media_id: key.mediaId, filesystem_id: row.filesystem_id },
      'cached remote media file is missing or truncated: dropped from the cache, fetched again',
    );
    await this.#drop(row);
    return undefined;
  }

  async #fetch(key: RemoteMediaKey, timeoutMs: number): Promise<RemoteMediaRow> {
    const file = await this.#fetcher.download(key.origin, key.mediaId, timeoutMs);
    const { store, config } = this.deps;
    const tmp = await store.writeTempBuffer(file.bytes);
    const filesystemId = randomBytes(12).toString('hex');
    const path = this.contentPath(filesystemId);
    await store.commit(tmp, path);
    const now = Date.now();
    const row: RemoteMediaRow = {
      media_origin: key.origin,
      media_id: key.mediaId,
      media_type: file.mediaType,
      media_length: tmp.length,
      upload_name: file.fileName,
      created_ts: now,
      last_access_ts: now,
      filesystem_id: filesystemId,
      sha256: tmp.sha256,
      authenticated: config.enable_authenticated_media ? 1 : 0,
    };
    let inserted: boolean;
    try {
      inserted = await insertRemoteMedia(this.#db, row);
    } catch (err) {
      await this.#removeFiles(filesystemId);
      throw err;
    }
    if (inserted) return row;
    // Another process cached it first: keep its copy.
    await this.#removeFiles(filesystemId);
    const existing = await getRemoteMedia(this.#db, key);
    if (!existing) throw new MatrixError('M_UNKNOWN', 'Failed to fetch remote media', {}, 502);
    return existing;
  }

  #generate(row: RemoteMediaRow, key: ThumbnailRequest): Promise<RemoteThumbnailRow> {
    const id = `${row.filesystem_id}/${key.width}/${key.height}/${key.method}/${key.animated ? 1 : 0}`;
    let job = this.#generating.get(id);
    if (!job) {
      job = this.#doGenerate(row, key).finally(() => this.#generating.delete(id));
      this.#generating.set(id, job);
    }
    return job;
  }

  async #doGenerate(row: RemoteMediaRow, key: ThumbnailRequest): Promise<RemoteThumbnailRow> {
    const thumbKey = { ...keyOf(row), ...key };
    const cached = await getRemoteThumbnail(this.#db, thumbKey);
    if (cached) return cached;
    let thumb;
    try {
      thumb = await makeThumbnail(
        this.contentPath(row.filesystem_id),
        row.media_type,
        key,
        this.deps.config.max_image_pixels,
      );
    } catch (err) {
      if (err instanceof ImageTooLargeError) {
        throw new MatrixError(
          'M_TOO_LARGE',
          'The remote content is too large for the server to thumbnail',
          {},
          502,
        );
      }
      if (err instanceof ThumbnailError) {
        throw new MatrixError('M_UNKNOWN', 'Cannot generate thumbnails for the requested content', {}, 400);
      }
      throw err;
    }
    const tmp = await this.deps.store.writeTempBuffer(thumb.data);
    try {
      await this.deps.store.commit(tmp, this.thumbnailPath(row.filesystem_id, key));
    } catch (err) {
      if (!(err instanceof MediaExistsError)) throw err;
    }
    const out: RemoteThumbnailRow = {
      media_origin: row.media_origin,
      media_id: row.media_id,
      width: key.width,
      height: key.height,
      method: key.method,
      animated: key.animated ? 1 : 0,
      content_type: thumb.contentType,
      length: thumb.data.length,
      created_ts: Date.now(),
    };
    await insertRemoteThumbnail(this.#db, out);
    return (await getRemoteThumbnail(this.#db, thumbKey)) ?? out;
  }

  #drop(row: RemoteMediaRow): Promise<void> {
    return drop(this.deps, row);
  }

  #removeFiles(filesystemId: string): Promise<void> {
    return removeFiles(this.deps, filesystemId);
  }

  #touch(key: RemoteMediaKey): void {
    const id = `${key.origin}/${key.mediaId}`;
    const now = Date.now();
    if (now - (this.#accessed.get(id) ?? 0) < ACCESS_UPDATE_INTERVAL_MS) return;
    if (this.#accessed.size > 100_000) this.#accessed.clear();
    this.#accessed.set(id, now);
    touchRemoteMedia(this.#db, key, now).catch((err: unknown) =>
      this.deps.log.warn({ err }, 'could not record access to cached remote media'),
    );
  }
}
