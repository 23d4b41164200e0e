// Runs the whole test suite (or the files given as arguments) with node's test runner, on SQLite and on a
// throwaway PostgreSQL cluster. With CI=true a missing PostgreSQL is a failure, not a skip.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pgAvailable, startPgCluster } from './pg-cluster.mjs';

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

const files = process.argv.slice(2).length ? process.argv.slice(2) : findTests('test');
const ci = process.env.CI === 'true' || process.env.CI === '1';
const env = { ...process.env };
let cluster;
if (!env.HEARTH_TEST_PG_URL) {
  if (pgAvailable()) {
    cluster = await startPgCluster();
    env.HEARTH_TEST_PG_URL = cluster.url;
    console.log(`PostgreSQL test cluster at ${cluster.url}`);
  } else if (ci) {
    console.error(
      'CI=true but no PostgreSQL 15 binaries were found (set HEARTH_PG_BIN): the PostgreSQL tests cannot be skipped in CI',
    );
    process.exit(1);
  } else {
    console.log(
      'SKIPPING PostgreSQL tests: no PostgreSQL binaries at /usr/lib/postgresql/15/bin (set HEARTH_PG_BIN)',
    );
  }
}

const concurrency = process.env.HEARTH_TEST_CONCURRENCY ?? '2';
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', ...files],
  { stdio: 'inherit', env },
);
const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
cluster?.stop();
process.exit(code);
