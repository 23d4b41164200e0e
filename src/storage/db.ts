/** Opens the database of either engine behind one Kysely instance and migrates it. */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { createRequire } from 'node:module';
import type PgModule from 'pg';
import type { Config } from '../config/schema.js';
import { StreamPositions } from '../util/stream.js';
import type { Engine } from './dialect.js';
import { migrate } from './migrate.js';
import { watchedPool, type WatchedPool } from './pg-driver.js';
import { hearthSqliteDialect } from './sqlite-driver.js';
import type { Database } from './schema.js';

/** pg is loaded only for a PostgreSQL database, so an embedded SQLite server does not carry it. */
let pgModule: typeof PgModule | undefined;
function loadPg(): typeof PgModule {
  if (!pgModule) {
    pgModule = createRequire(import.meta.url)('pg') as typeof PgModule;
    // int8 (bigint) columns hold timestamps and stream positions, all well within 2^53.
    pgModule.types.setTypeParser(20, (v) => Number(v));
  }
  return pgModule;
}

export class DatabaseUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUnavailableError';
  }
}

export interface Storage {
  db: Kysely<Database>;
  engine: Engine;
  stream: StreamPositions;
  /** True when this open created the schema from nothing (the server's first start). */
  freshlyCreated: boolean;
  close(): Promise<void>;
}

export function openKysely(dbConfig: Config['database']): Kysely<Database> {
  if (dbConfig.engine === 'sqlite') {
    const path = dbConfig.path ?? ':memory:';
    let conn: SqliteDatabase.Database;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      conn = new SqliteDatabase(path);
    } catch (err) {
      throw new DatabaseUnavailableError(`cannot open SQLite database ${path}: ${(err as Error).message}`);
    }
    const wal = String(conn.pragma('journal_mode = WAL', { simple: true })).toLowerCase() === 'wal';
    // In WAL mode the commit's WAL fsync is done by the driver, off the main thread, before the commit resolves
    // (sqlite-driver.ts): as durable as synchronous = FULL.
    conn.pragma(wal ? 'synchronous = NORMAL' : 'synchronous = FULL');
    conn.pragma('foreign_keys = ON');
    conn.pragma('busy_timeout = 5000');
    return new Kysely<Database>({
      dialect: hearthSqliteDialect(conn, wal ? `${resolve(path)}-wal` : undefined),
    });
  }
  // Bounded waits: while PostgreSQL is down a request fails fast (503) instead of hanging on a connect or a query.
  const pool = new (loadPg().Pool)({
    connectionString: dbConfig.url,
    max: dbConfig.max_connections,
    connectionTimeoutMillis: 5_000,
    query_timeout: 60_000,
    statement_timeout: 60_000,
    keepAlive: true,
  });
  // An idle client that errors (server restart) must not crash the process.
  pool.on('error', () => undefined);
  // A checked-out client whose server goes away emits 'error' too: the failing query reports it (503).
  pool.on('connect', (client) => client.on('error', () => undefined));
  const watched = watchedPool(pool);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: watched }) });
  pgPools.set(db, watched);
  return db;
}

const pgPools = new WeakMap<Kysely<Database>, WatchedPool>();

/** Highest stream position used by any table; the stream counter starts from there. */
async function maxStreamPosition(db: Kysely<Database>): Promise<number> {
  const result = await sql<{ m: number | string | null }>`
    SELECT MAX(m) AS m FROM (
      SELECT MAX(stream_pos) AS m FROM account_data
      UNION ALL SELECT MAX(stream_ordering) AS m FROM events
      UNION ALL SELECT MAX(stream_pos) AS m FROM receipts
      UNION ALL SELECT MAX(stream_pos) AS m FROM presence
      UNION ALL SELECT MAX(stream_pos) AS m FROM to_device_messages
      UNION ALL SELECT MAX(stream_pos) AS m FROM device_list_changes
    ) AS positions`.execute(db);
  return Number(result.rows[0]?.m ?? 0);
}

/** Positions reserved ahead of use; the reservation is renewed in the background when half of it is used. */
const RESERVATION_BLOCK = 10_000;

async function reserveUpTo(db: Kysely<Database>, upTo: number): Promise<void> {
  await db
    .insertInto('stream_reservation')
    .values({ id: 1, up_to: upTo })
    .onConflict((oc) => oc.column('id').doUpdateSet({ up_to: upTo }))
    .execute();
}

/**
 * The stream counter starts above both the highest stored position and the persisted reservation, so a position a
 * client may hold in a token is never handed out again after a restart, even when its row is gone.
 */
async function openStreamPositions(db: Kysely<Database>): Promise<StreamPositions> {
  const reserved = await db
    .selectFrom('stream_reservation')
    .select('up_to')
    .where('id', '=', 1)
    .executeTakeFirst();
  const start = Math.max(await maxStreamPosition(db), Number(reserved?.up_to ?? 0));
  await reserveUpTo(db, start + RESERVATION_BLOCK);
  return new StreamPositions(start, {
    reservedUpTo: start + RESERVATION_BLOCK,
    block: RESERVATION_BLOCK,
    reserve: (upTo) => reserveUpTo(db, upTo),
  });
}

export async function openStorage(dbConfig: Config['database']): Promise<Storage> {
  const db = openKysely(dbConfig);
  try {
    await sql`SELECT 1`.execute(db);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    const where = dbConfig.engine === 'postgres' ? redactUrl(dbConfig.url ?? '') : dbConfig.path;
    throw new DatabaseUnavailableError(`database ${where} is unreachable: ${(err as Error).message}`);
  }
  let applied: number[];
  try {
    applied = await migrate(db, dbConfig.engine);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    throw err;
  }
  // The schema no longer changes under a prepared statement: PostgreSQL queries may be named from now on.
  const watched = pgPools.get(db);
  if (watched) watched.nameStatements = true;
  const stream = await openStreamPositions(db);
  const freshlyCreated = applied[0] === 1;
  return { db, engine: dbConfig.engine, stream, freshlyCreated, close: () => db.destroy() };
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}
