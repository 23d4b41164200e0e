/**
 * Benchmark runner: `npm run bench [-- scenario...] [--engine sqlite|postgres|both]`.
 *
 * Each scenario is one file under bench/ exporting a Scenario ({ name, description, run(ctx) }) and one line in
 * SCENARIOS below. Every (engine, scenario) pair runs against its own freshly started server and database, so
 * scenarios cannot disturb each other. PostgreSQL uses HEARTH_TEST_PG_URL when set, otherwise a throwaway cluster
 * started by scripts/pg-cluster.mjs. Figures are reported, never asserted. The run stops every server, drops
 * every database, stops the cluster and removes temp data when it finishes, fails or is interrupted.
 */
import {
  cleanupAll,
  postgresAdminUrl,
  printTable,
  startBenchServer,
  type Engine,
  type ResultRow,
} from './lib.js';
import type { Scenario } from './lib.js';
import send from './send.js';
import syncLatency from './sync-latency.js';
import initialSync from './initial-sync.js';
import incrementalSync from './incremental-sync.js';
import media from './media.js';
import federationSend from './federation-send.js';
import federationJoin from './federation-join.js';
import slidingSyncInitial from './sliding-sync-initial.js';
import slidingSyncWake from './sliding-sync-wake.js';
import appservice from './appservice.js';
import idleRss from './idle-rss.js';
import syncFanout from './sync-fanout.js';

/** Scenario name → module. Add a scenario by writing bench/<name>.ts and adding it here. */
const SCENARIOS: ReadonlyMap<string, Scenario> = new Map(
  [
    send,
    syncLatency,
    initialSync,
    incrementalSync,
    media,
    federationSend,
    federationJoin,
    slidingSyncInitial,
    slidingSyncWake,
    appservice,
    idleRss,
    syncFanout,
  ].map((s) => [s.name, s]),
);

const USAGE = `usage: npm run bench [-- scenario...] [--engine sqlite|postgres|both]

scenarios (default: all):
${[...SCENARIOS.values()].map((s) => `  ${s.name.padEnd(18)} ${s.description}`).join('\n')}

environment: BENCH_MESSAGES (messages per case, default 1000), BENCH_SENDERS (default 20),
  BENCH_SLIDING_ROOMS (sliding-sync-initial room counts, default 200,2000),
  BENCH_AS_EVENTS / BENCH_AS_OUTAGE (appservice live and outage messages, default 2000 / 10000),
  HEARTH_TEST_PG_URL (use this PostgreSQL instead of starting a cluster), HEARTH_BENCH_LOG (server log level)`;

interface Args {
  scenarios: Scenario[];
  engines: Engine[];
  /** True when the engines were not chosen explicitly (PostgreSQL may then be skipped when unavailable). */
  defaultEngines: boolean;
}

class UsageError extends Error {}

function parseArgs(argv: readonly string[]): Args | 'help' {
  const names: string[] = [];
  let engine: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--help' || a === '-h') return 'help';
    if (a === '--engine') {
      engine = argv[++i];
      if (engine === undefined) throw new UsageError('--engine needs a value');
    } else if (a.startsWith('--engine=')) {
      engine = a.slice('--engine='.length);
    } else if (a.startsWith('-')) {
      throw new UsageError(`unknown option ${a}`);
    } else {
      names.push(a);
    }
  }
  const engines: Engine[] =
    engine === undefined || engine === 'both'
      ? ['sqlite', 'postgres']
      : engine === 'sqlite' || engine === 'postgres'
        ? [engine]
        : [];
  if (engines.length === 0) throw new UsageError(`--engine must be sqlite, postgres or both, not ${engine}`);
  const scenarios = names.length === 0 ? [...SCENARIOS.values()] : [];
  for (const n of names) {
    const s = SCENARIOS.get(n);
    if (!s) throw new UsageError(`unknown scenario ${n}`);
    if (!scenarios.includes(s)) scenarios.push(s);
  }
  return { scenarios, engines, defaultEngines: engine === undefined };
}

async function main(args: Args): Promise<void> {
  const log = (m: string): void => void process.stderr.write(`${m}\n`);
  const results = new Map<string, ResultRow[]>(args.scenarios.map((s) => [s.name, []]));
  for (const engine of args.engines) {
    let pgUrl: string | undefined;
    if (engine === 'postgres') {
      try {
        pgUrl = await postgresAdminUrl();
      } catch (err) {
        if (!args.defaultEngines) throw err;
        log(`SKIPPING postgres: ${(err as Error).message}`);
        continue;
      }
    }
    for (const scenario of args.scenarios) {
      log(`[${engine}] ${scenario.name}: starting a fresh server`);
      const server = await startBenchServer(engine, pgUrl, { federation: scenario.federation ?? false });
      try {
        const rows = await scenario.run({
          engine,
          server,
          pgAdminUrl: pgUrl,
          log: (m) => log(`[${engine}] ${scenario.name}: ${m}`),
        });
        results.get(scenario.name)?.push(...rows.map((r) => ({ engine, ...r })));
      } finally {
        await server.close();
      }
    }
  }
  for (const [name, rows] of results) {
    console.log(`\n${name}  (node ${process.version}, ${process.platform}/${process.arch})`);
    printTable(rows);
  }
}

let parsed: Args | 'help';
try {
  parsed = parseArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  console.error(`${err.message}\n\n${USAGE}`);
  process.exit(2);
}
if (parsed === 'help') {
  console.log(USAGE);
  process.exit(0);
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${sig}: cleaning up\n`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

let code = 0;
try {
  await main(parsed);
} catch (err) {
  // After a signal the server is being stopped under the scenario; its failures are expected, not news.
  if (!interrupted) console.error(`bench failed: ${(err as Error).stack ?? String(err)}`);
  code = 1;
} finally {
  await cleanupAll();
}
// Keep-alive sockets and timers of the client must not keep a finished run alive.
process.exit(code);
