/**
 * Online backups and restores. A backup is a directory:
 *
 *   manifest.json      engine, schema version, time, Hearth version
 *   database.sqlite    SQLite: a consistent copy made with SQLite's online backup API while the server runs
 *   database.pgdump    PostgreSQL: `pg_dump --format=custom` (one consistent snapshot; restore with pg_restore)
 *   signing.key        the server's signing key
 *   homeserver.yaml    the configuration the backup was made with
 *   media/             a copy of media_store_path, when it exists
 *
 * Media files are copied after the database: a file uploaded in between is in the copy without its row (harmless);
 * a row is never without its file, because media files are written before their rows.
 */
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import type { Config } from '../config/schema.js';
import { openKysely } from '../storage/db.js';
import { currentSchemaVersion } from '../storage/migrate.js';

export class BackupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupError';
  }
}

export interface BackupManifest {
  format: 1;
  engine: 'sqlite' | 'postgres';
  schema_version: number;
  created_ts: number;
  hearth_version: string;
  server_name: string;
  media: boolean;
}

/** Where pg_dump and pg_restore are: HEARTH_PG_BIN, the Debian PostgreSQL 15 path, else the PATH. */
export function pgTool(name: 'pg_dump' | 'pg_restore'): string {
  const dirs = [process.env.HEARTH_PG_BIN, '/usr/lib/postgresql/15/bin'].filter((d): d is string => !!d);
  for (const d of dirs) if (existsSync(join(d, name))) return join(d, name);
  return name;
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw new BackupError(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0)
    throw new BackupError(
      `${cmd} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' ')}`,
    );
}

function hearthVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

export async function makeBackup(config: Config, configPath: string, out: string): Promise<BackupManifest> {
  if (existsSync(out) && readdirSync(out).length > 0) throw new BackupError(`${out} exists and is not empty`);
  mkdirSync(out, { recursive: true });
  const db = openKysely(config.database);
  let schemaVersion: number;
  try {
    schemaVersion = await currentSchemaVersion(db);
  } catch (err) {
    throw new BackupError(`cannot read the database: ${(err as Error).message}`);
  } finally {
    await db.destroy();
  }
  if (config.database.engine === 'sqlite') {
    const src = new SqliteDatabase(config.database.path as string, { fileMustExist: true });
    try {
      await src.backup(join(out, 'database.sqlite'));
    } finally {
      src.close();
    }
  } else {
    run(pgTool('pg_dump'), [
      '--format=custom',
      '--no-owner',
      `--file=${join(out, 'database.pgdump')}`,
      `--dbname=${config.database.url as string}`,
    ]);
  }
  if (!existsSync(config.signing_key_path))
    throw new BackupError(`signing key ${config.signing_key_path} is missing`);
  copyFileSync(config.signing_key_path, join(out, 'signing.key'));
  copyFileSync(configPath, join(out, 'homeserver.yaml'));
  const media = existsSync(config.media_store_path) && statSync(config.media_store_path).isDirectory();
  if (media) cpSync(config.media_store_path, join(out, 'media'), { recursive: true });
  const manifest: BackupManifest = {
    format: 1,
    engine: config.database.engine,
    schema_version: schemaVersion,
    created_ts: Date.now(),
    hearth_version: hearthVersion(),
    server_name: config.server_name,
    media,
  };
  writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

async function databaseIsEmpty(config: Config): Promise<boolean> {
  if (config.database.engine === 'sqlite') {
    const path = config.database.path as string;
    if (!existsSync(path) || statSync(path).size === 0) return true;
    const conn = new SqliteDatabase(path, { readonly: true });
    try {
      const row = conn.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'").get() as {
        n: number;
      };
      return row.n === 0;
    } finally {
      conn.close();
    }
  }
  const db = openKysely(config.database);
  try {
    const r = await sql<{ n: number | string }>`
      SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema()`.execute(db);
    return Number(r.rows[0]?.n ?? 0) === 0;
  } finally {
    await db.destroy();
  }
}

export async function restoreBackup(config: Config, from: string): Promise<BackupManifest> {
  const manifestPath = join(from, 'manifest.json');
  if (!existsSync(manifestPath)) throw new BackupError(`${from} is not a Hearth backup (no manifest.json)`);
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as BackupManifest;
  if (manifest.engine !== config.database.engine) {
    throw new BackupError(
      `the backup is of a ${manifest.engine} database, the configuration uses ${config.database.engine}`,
    );
  }
  if (manifest.server_name !== config.server_name) {
    throw new BackupError(
      `the backup is of ${manifest.server_name}, the configuration is for ${config.server_name}`,
    );
  }
  if (!(await databaseIsEmpty(config)))
    throw new BackupError('the target database is not empty: restore only into an empty one');
  const key = join(from, 'signing.key');
  if (
    existsSync(config.signing_key_path) &&
    !readFileSync(config.signing_key_path).equals(readFileSync(key))
  ) {
    throw new BackupError(`${config.signing_key_path} exists and holds another key: move it away first`);
  }
  if (config.database.engine === 'sqlite') {
    const path = config.database.path as string;
    mkdirSync(dirname(path), { recursive: true });
    copyFileSync(join(from, 'database.sqlite'), path);
  } else {
    run(pgTool('pg_restore'), [
      '--no-owner',
      '--exit-on-error',
      `--dbname=${config.database.url as string}`,
      join(from, 'database.pgdump'),
    ]);
  }
  if (!existsSync(config.signing_key_path)) {
    mkdirSync(dirname(config.signing_key_path), { recursive: true });
    copyFileSync(key, config.signing_key_path);
  }
  if (manifest.media && existsSync(join(from, 'media'))) {
    cpSync(join(from, 'media'), config.media_store_path, { recursive: true, force: false });
  }
  return manifest;
}
