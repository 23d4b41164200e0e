/**
 * Media files on disk under media_store_path, sharded by id as Synapse lays them out:
 * `local_content/ab/cd/efgh...` and `local_thumbnails/ab/cd/efgh.../<w>-<h>-<method>[-animated]`.
 *
 * Writes are atomic and durable: content goes to `tmp/` first, is fsynced, then linked into place (link fails rather
 * than replace an existing file) and the directory is fsynced. Only then may a database row name it. A crash leaves
 * at most a file in `tmp/`, removed at the next start.
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export class MediaTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`Upload exceeds the limit of ${limit} bytes`);
    this.name = 'MediaTooLargeError';
  }
}

export class MediaExistsError extends Error {
  constructor() {
    super('Media file already exists');
    this.name = 'MediaExistsError';
  }
}

export interface TempFile {
  path: string;
  length: number;
  sha256: string;
}

export interface ThumbnailKey {
  width: number;
  height: number;
  method: string;
  animated: boolean;
}

function shard(mediaId: string): string[] {
  return [mediaId.slice(0, 2), mediaId.slice(2, 4), mediaId.slice(4) || '_'];
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class MediaStore {
  readonly tmpDir: string;

  constructor(readonly root: string) {
    this.tmpDir = join(root, 'tmp');
  }

  contentPath(mediaId: string): string {
    return join(this.root, 'local_content', ...shard(mediaId));
  }

  thumbnailDir(mediaId: string): string {
    return join(this.root, 'local_thumbnails', ...shard(mediaId));
  }

  thumbnailPath(mediaId: string, key: ThumbnailKey): string {
    const name = `${key.width}-${key.height}-${key.method}${key.animated ? '-animated' : ''}`;
    return join(this.thumbnailDir(mediaId), name);
  }

  /** Creates the directories and removes temp files left by a crash. Returns how many were removed. */
  async init(): Promise<number> {
    await mkdir(this.tmpDir, { recursive: true });
    const left = await readdir(this.tmpDir);
    await Promise.all(left.map((name) => rm(join(this.tmpDir, name), { force: true, recursive: true })));
    return left.length;
  }

  /**
   * Streams `source` into a new temp file, at most `limit` bytes, and fsyncs it. Chunks are written one at a time,
   * so memory use does not depend on the size of the upload. On any failure the temp file is removed.
   */
  async writeTemp(source: AsyncIterable<Buffer> | Iterable<Buffer>, limit: number): Promise<TempFile> {
    const path = join(this.tmpDir, `${Date.now()}-${randomBytes(8).toString('hex')}`);
    const fh = await open(path, 'wx', 0o600);
    const hash = createHash('sha256');
    let length = 0;
    try {
      for await (const chunk of source) {
        length += chunk.length;
        if (length > limit) throw new MediaTooLargeError(limit);
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
      }
      await fh.sync();
      await fh.close();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
      throw err;
    }
    return { path, length, sha256: hash.digest('hex') };
  }

  /** Writes a small buffer (a thumbnail) to a temp file, fsynced. */
  writeTempBuffer(data: Buffer): Promise<TempFile> {
    return this.writeTemp([data], Number.MAX_SAFE_INTEGER);
  }

  /**
   * Moves a temp file to `dest` durably. Throws MediaExistsError, leaving `dest` as it was, when it already exists.
   * The temp file is gone afterwards in every case.
   */
  async commit(tmp: TempFile, dest: string): Promise<void> {
    try {
      await mkdir(dirname(dest), { recursive: true });
      await link(tmp.path, dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new MediaExistsError();
      throw err;
    } finally {
      await unlink(tmp.path).catch(() => undefined);
    }
    await fsyncDir(dirname(dest));
  }

  async discard(tmp: TempFile): Promise<void> {
    await unlink(tmp.path).catch(() => undefined);
  }

  async size(path: string): Promise<number | undefined> {
    try {
      return (await stat(path)).size;
    } catch {
      return undefined;
    }
  }

  /** Removes the content file and every thumbnail of a media id. */
  async remove(mediaId: string): Promise<void> {
    await rm(this.contentPath(mediaId), { force: true });
    await rm(this.thumbnailDir(mediaId), { force: true, recursive: true });
  }

  /** Media ids that have a content file, by walking local_content. */
  async contentIds(): Promise<string[]> {
    const base = join(this.root, 'local_content');
    const out: string[] = [];
    const list = async (p: string): Promise<string[]> => {
      try {
        return await readdir(p);
      } catch {
        return [];
      }
    };
    for (const a of await list(base)) {
      for (const b of await list(join(base, a))) {
        for (const rest of await list(join(base, a, b))) out.push(a + b + (rest === '_' ? '' : rest));
      }
    }
    return out;
  }
}
