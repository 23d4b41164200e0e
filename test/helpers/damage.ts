/** Damaging a stopped server's database with SQL, as a bad restore or an operator would. */
import { sql, type Kysely } from 'kysely';
import { openKysely } from '../../src/storage/db.js';
import type { Database } from '../../src/storage/schema.js';
import type { TestServer } from './server.js';

/** Runs `fn` on the stopped server's database with foreign keys and the events CHECK constraint off. */
export async function damage(server: TestServer, fn: (db: Kysely<Database>) => Promise<void>): Promise<void> {
  const db = openKysely(server.db.config);
  try {
    if (server.db.config.engine === 'sqlite') {
      await sql`PRAGMA foreign_keys = OFF`.execute(db);
      await sql`PRAGMA ignore_check_constraints = ON`.execute(db);
      await fn(db);
    } else {
      await db.connection().execute(async (conn) => {
        await sql`SET session_replication_role = replica`.execute(conn);
        await sql`ALTER TABLE events DROP CONSTRAINT IF EXISTS events_not_outlier_has_state`.execute(conn);
        await fn(conn);
      });
    }
  } finally {
    await db.destroy();
  }
}
