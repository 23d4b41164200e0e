/** Runs storage and HTTP tests on every engine: SQLite always, PostgreSQL when the test runner started a cluster. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Config } from '../../src/config/schema.js';
import type { Engine } from '../../src/storage/dialect.js';

const PG_URL = process.env.HEARTH_TEST_PG_URL;
const CI = process.env.CI === 'true' || process.env.CI === '1';

if (!PG_URL && CI) {
  throw new Error('CI=true but HEARTH_TEST_PG_URL is not set: run the suite with `npm test`');
}
if (!PG_URL) {
  console.log('# SKIPPING PostgreSQL variants: HEARTH_TEST_PG_URL not set (npm test starts a cluster)');
}

export const ENGINES: readonly Engine[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite'];

export interface TestDatabase {
  config: Config['database'];
  /** Removes the database (file or PostgreSQL database). */
  drop(): Promise<void>;
}

/** A new, empty database of the given engine. */
export async function freshDatabase(engine: Engine): Promise<TestDatabase> {
  if (engine === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'hearth-test-'));
    return {
      config: { engine: 'sqlite', path: join(dir, 'homeserver.db'), max_connections: 10 },
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  if (!PG_URL) throw new Error('PostgreSQL is not available');
  const name = `hearth_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  return {
    config: { engine: 'postgres', url: url.toString(), max_connections: 10 },
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}
