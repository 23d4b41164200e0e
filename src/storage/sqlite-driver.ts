/**
 * The SQLite side of Kysely, tuned for the write path without weakening durability.
 *
 * Prepared statements are cached by SQL text (bounded LRU): Kysely asks better-sqlite3 to prepare every query it
 * runs, which cost ~10% of a send. A cached statement still iterating (a streamed select) is never handed out
 * again: a fresh one is prepared for that call.
 *
 * The WAL fsync of a commit runs off the main thread. In WAL mode `synchronous=FULL` is `synchronous=NORMAL` plus
 * an fsync of the WAL file after every commit (https://sqlite.org/pragma.html#pragma_synchronous: NORMAL already
 * syncs the WAL before each checkpoint, the database after it and the WAL header when the WAL is reused). The
 * connection therefore runs with NORMAL, and after every statement that ends a write outside a transaction (a
 * COMMIT, or an autocommitted write) the driver fdatasyncs the WAL file in the libuv thread pool before the
 * statement's promise resolves, still holding the one connection: no other query, and no caller, sees a commit
 * before it is durable, exactly as with FULL, but the event loop keeps serving requests (building, signing and
 * checking the next group's events) while the disk works. When WAL mode is not available (`:memory:`) the
 * connection keeps `synchronous=FULL` and nothing is synced by hand.
 */
import { fdatasync, openSync, closeSync, fstatSync, statSync } from 'node:fs';
import type BetterSqlite3 from 'better-sqlite3';
import {
  CompiledQuery,
  SqliteDialect,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  type SqliteDatabase,
  type SqliteStatement,
} from 'kysely';
import { noteWrite, watchedWrite } from './write-watch.js';

/** Distinct SQL texts kept prepared (Kysely's `in (...)` lists make a few texts per list length). */
export const STATEMENT_CACHE_SIZE = 1000;

/** A better-sqlite3 connection whose prepare() reuses statements by SQL text. */
export class CachingSqliteDatabase implements SqliteDatabase {
  #cache = new Map<string, BetterSqlite3.Statement>();
  /** After a write that ended outside a transaction: the WAL must be synced before anyone goes on. */
  dirty = false;

  constructor(
    readonly conn: BetterSqlite3.Database,
    private readonly trackWrites: boolean,
  ) {}

  close(): void {
    this.#cache.clear();
    this.conn.close();
  }

  prepare(sqlText: string): SqliteStatement {
    let stmt = this.#cache.get(sqlText);
    if (stmt && !stmt.busy) {
      // Most recently used last.
      this.#cache.delete(sqlText);
      this.#cache.set(sqlText, stmt);
    } else if (stmt) {
      return this.#track(this.conn.prepare(sqlText), sqlText);
    } else {
      stmt = this.conn.prepare(sqlText);
      this.#cache.set(sqlText, stmt);
      if (this.#cache.size > STATEMENT_CACHE_SIZE) {
        const oldest = this.#cache.keys().next();
        if (!oldest.done) this.#cache.delete(oldest.value);
      }
    }
    return this.#track(stmt, sqlText);
  }

  /** Kysely runs a writing statement with run(): note when it leaves no transaction open (it committed). */
  #track(stmt: BetterSqlite3.Statement, sqlText: string): SqliteStatement {
    if (stmt.reader) return stmt;
    // One connection: a cache's read runs before or after this statement's transaction, never inside it.
    const watched = watchedWrite(sqlText);
    if (watched) noteWrite(watched);
    // A rollback leaves nothing to make durable.
    if (!this.trackWrites || sqlText === 'rollback') return stmt;
    return {
      reader: false,
      all: (p: readonly unknown[]) => stmt.all(p) as unknown[],
      iterate: (p: readonly unknown[]) => stmt.iterate(p) as IterableIterator<unknown>,
      run: (p: readonly unknown[]) => {
        try {
          return stmt.run(p);
        } finally {
          if (!this.conn.inTransaction) this.dirty = true;
        }
      },
    };
  }
}

/** fdatasyncs the WAL file of `dbPath`, reopening it when SQLite has replaced the file. */
class WalSyncer {
  #fd: number | undefined;
  #ino = 0;

  constructor(private readonly walPath: string) {}

  sync(): Promise<void> {
    let fd: number;
    try {
      fd = this.#open();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return new Promise<void>((resolve, reject) => {
      fdatasync(fd, (err) => {
        if (err) {
          reject(err);
          return;
        }
        walSyncs.set(this.walPath, (walSyncs.get(this.walPath) ?? 0) + 1);
        resolve();
      });
    });
  }

  #open(): number {
    const ino = statSync(this.walPath).ino;
    if (this.#fd !== undefined && ino === this.#ino) return this.#fd;
    this.close();
    this.#fd = openSync(this.walPath, 'r+');
    this.#ino = fstatSync(this.#fd).ino;
    return this.#fd;
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** The Kysely connection: better-sqlite3's, then the WAL sync a commit needs before it resolves. */
class SyncingConnection implements DatabaseConnection {
  constructor(
    private readonly inner: DatabaseConnection,
    private readonly db: CachingSqliteDatabase,
    private readonly wal: WalSyncer,
  ) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    try {
      return await this.inner.executeQuery<R>(query);
    } finally {
      if (this.db.dirty) {
        this.db.dirty = false;
        await this.wal.sync();
      }
    }
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

/** Opens the Kysely dialect over `conn` (already in WAL mode when `walPath` is given). */
export function hearthSqliteDialect(
  conn: BetterSqlite3.Database,
  walPath: string | undefined,
): SqliteDialect {
  const db = new CachingSqliteDatabase(conn, walPath !== undefined);
  if (walPath === undefined) return new SqliteDialect({ database: db });
  const wal = new WalSyncer(walPath);
  class Dialect extends SqliteDialect {
    override createDriver(): Driver {
      const driver = super.createDriver();
      const wrapped = new WeakMap<DatabaseConnection, SyncingConnection>();
      const wrap = (c: DatabaseConnection): SyncingConnection => {
        let w = wrapped.get(c);
        if (!w) {
          w = new SyncingConnection(c, db, wal);
          wrapped.set(c, w);
        }
        return w;
      };
      return {
        init: () => driver.init(),
        acquireConnection: async () => wrap(await driver.acquireConnection()),
        beginTransaction: (c, s) => driver.beginTransaction(c, s),
        commitTransaction: (c) => driver.commitTransaction(c),
        rollbackTransaction: (c) => driver.rollbackTransaction(c),
        releaseConnection: (c) => driver.releaseConnection(c),
        destroy: async () => {
          await driver.destroy();
          wal.close();
        },
        ...(driver.savepoint && {
          savepoint: driver.savepoint.bind(driver),
        }),
        ...(driver.rollbackToSavepoint && {
          rollbackToSavepoint: driver.rollbackToSavepoint.bind(driver),
        }),
        ...(driver.releaseSavepoint && {
          releaseSavepoint: driver.releaseSavepoint.bind(driver),
        }),
      };
    }
  }
  return new Dialect({ database: db });
}

/** Completed WAL syncs by WAL file path, for the tests (a commit resolves only after its sync). */
const walSyncs = new Map<string, number>();

/** WAL syncs completed so far for the database at `dbPath` (absolute). */
export function walSyncCount(dbPath: string): number {
  return walSyncs.get(`${dbPath}-wal`) ?? 0;
}
