/**
 * The SQLite driver (src/storage/sqlite-driver.ts): statements are reused by SQL text, a statement still iterating
 * is not handed out twice, and every commit (and every autocommitted write) resolves only after the WAL file was
 * fdatasynced, while reads and rolled-back transactions cost no sync. SQLite only: PostgreSQL has its own driver.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import { openStorage, type Storage } from '../../src/storage/db.js';
import {
  CachingSqliteDatabase,
  STATEMENT_CACHE_SIZE,
  walSyncCount,
} from '../../src/storage/sqlite-driver.js';
import { freshDatabase, type TestDatabase } from '../helpers/engines.js';

describe('sqlite driver: prepared statement cache', () => {
  it('reuses a statement by its SQL text, but not one still iterating, and stays bounded', () => {
    const conn = new SqliteDatabase(':memory:');
    const db = new CachingSqliteDatabase(conn, false);
    try {
      conn.exec('CREATE TABLE t (a INTEGER)');
      conn.exec('INSERT INTO t VALUES (1), (2), (3)');
      const a = db.prepare('SELECT a FROM t ORDER BY a');
      assert.equal(db.prepare('SELECT a FROM t ORDER BY a'), a, 'the same text gives the cached statement');
      const it1 = a.iterate([]);
      assert.deepEqual(it1.next().value, { a: 1 });
      // While `a` iterates, the same text must give another statement (better-sqlite3 refuses a busy one).
      const b = db.prepare('SELECT a FROM t ORDER BY a');
      assert.notEqual(b, a);
      assert.deepEqual(b.all([]), [{ a: 1 }, { a: 2 }, { a: 3 }]);
      assert.deepEqual([...it1].length, 2);
      for (let i = 0; i <= STATEMENT_CACHE_SIZE; i++) db.prepare(`SELECT ${i} AS n`);
      assert.notEqual(db.prepare('SELECT a FROM t ORDER BY a'), a, 'the oldest statement was evicted');
    } finally {
      db.close();
    }
  });
});

describe('sqlite driver: WAL sync off the main thread', () => {
  let t: TestDatabase;
  let storage: Storage;
  let path: string;
  before(async () => {
    t = await freshDatabase('sqlite');
    path = t.config.path as string;
    storage = await openStorage(t.config);
    await sql`CREATE TABLE sync_probe (a INTEGER PRIMARY KEY, b TEXT)`.execute(storage.db);
  });
  after(async () => {
    await storage.close();
    await t.drop();
  });

  it('runs the connection in WAL mode with synchronous=NORMAL plus its own WAL fsync', async () => {
    const mode = await sql<{ journal_mode: string }>`PRAGMA journal_mode`.execute(storage.db);
    assert.equal(mode.rows[0]?.journal_mode, 'wal');
    const sync = await sql<{ synchronous: number }>`PRAGMA synchronous`.execute(storage.db);
    assert.equal(sync.rows[0]?.synchronous, 1);
  });

  it('a transaction resolves only after its WAL sync; reads and rollbacks sync nothing', async () => {
    const before = walSyncCount(path);
    await storage.db.transaction().execute(async (trx) => {
      await sql`INSERT INTO sync_probe (b) VALUES ('one')`.execute(trx);
      await sql`INSERT INTO sync_probe (b) VALUES ('two')`.execute(trx);
      assert.equal(walSyncCount(path), before, 'no sync inside the transaction');
    });
    assert.equal(walSyncCount(path), before + 1, 'the commit was synced before it resolved');
    await sql`SELECT * FROM sync_probe`.execute(storage.db);
    assert.equal(walSyncCount(path), before + 1, 'a read syncs nothing');
    await assert.rejects(
      storage.db.transaction().execute(async (trx) => {
        await sql`INSERT INTO sync_probe (b) VALUES ('three')`.execute(trx);
        throw new Error('abandon');
      }),
      /abandon/,
    );
    assert.equal(walSyncCount(path), before + 1, 'a rollback syncs nothing');
    await sql`INSERT INTO sync_probe (b) VALUES ('four')`.execute(storage.db);
    assert.equal(walSyncCount(path), before + 2, 'an autocommitted write is synced before it resolves');
    const rows = await sql<{ b: string }>`SELECT b FROM sync_probe ORDER BY a`.execute(storage.db);
    assert.deepEqual(
      rows.rows.map((r) => r.b),
      ['one', 'two', 'four'],
    );
  });
});
