/** Applies versioned migrations at start and refuses a database written by a newer Hearth. */
import { sql, type Kysely } from 'kysely';
import type { Engine } from './dialect.js';
import { MIGRATIONS } from './migrations/index.js';
import type { Migration } from './migrations/types.js';
import type { Database } from './schema.js';

export class SchemaTooNewError extends Error {
  constructor(found: number, known: number) {
    super(
      `the database schema is version ${found}, but this Hearth only knows versions up to ${known}: ` +
        'it was written by a newer Hearth; upgrade Hearth or restore a backup',
    );
    this.name = 'SchemaTooNewError';
  }
}

export async function currentSchemaVersion(db: Kysely<Database>): Promise<number> {
  const row = await db
    .selectFrom('schema_version')
    .select((eb) => eb.fn.max('version').as('v'))
    .executeTakeFirst();
  return Number(row?.v ?? 0);
}

/** Applies every pending migration, each in its own transaction. Returns the versions applied. */
export async function migrate(
  db: Kysely<Database>,
  engine: Engine,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  if (engine === 'sqlite') return migrateLocked(db, engine, migrations);
  // Two processes starting on one empty PostgreSQL database must not both create the schema: a session-level
  // advisory lock, held on one pinned connection, serialises them.
  return db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(4242001)`.execute(conn);
    try {
      return await migrateLocked(conn, engine, migrations);
    } finally {
      await sql`SELECT pg_advisory_unlock(4242001)`.execute(conn);
    }
  });
}

async function migrateLocked(
  db: Kysely<Database>,
  engine: Engine,
  migrations: readonly Migration[],
): Promise<number[]> {
  await db.schema
    .createTable('schema_version')
    .ifNotExists()
    .addColumn('version', 'integer', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('applied_ts', 'bigint', (c) => c.notNull())
    .execute();
  const known = migrations.at(-1)?.version ?? 0;
  const found = await currentSchemaVersion(db);
  if (found > known) throw new SchemaTooNewError(found, known);
  const applied: number[] = [];
  for (const m of migrations) {
    if (m.version <= found) continue;
    await db.transaction().execute(async (trx) => {
      if ((await currentSchemaVersion(trx)) >= m.version) return;
      await m.up(trx, engine);
      await trx
        .insertInto('schema_version')
        .values({ version: m.version, name: m.name, applied_ts: Date.now() })
        .execute();
      applied.push(m.version);
    });
  }
  return applied;
}
