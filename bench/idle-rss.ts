/**
 * Scenario `idle-rss`: the footprint of a freshly started, idle server alone in its own process. The server
 * (bench/child-server.ts, bundled once with esbuild so no TypeScript loader sits in the measured process) starts on
 * a fresh database with the defaults of a generated config (one client listener, metrics off, federation resources
 * off) and idles; its RSS (/proc) 5 s after it is ready and once settled, its anonymous RSS and its V8 heap are
 * read. It runs twice: with node's default heap settings and with the flags bin/hearth.js and `npm start` use
 * (HEARTH_NODE_FLAGS). A third start with a module-load hook (an extra thread, so its RSS is not reported) counts
 * the files loaded, by package, and names packages a fresh idle server should not have loaded.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { freshDatabase, onCleanup, type Engine, type ResultRow, type Scenario } from './lib.js';

const ROOT = join(import.meta.dirname, '..');
/** The node flags of bin/hearth.js (its shebang) and `npm start`: a 1 MiB young generation semi-space (README). */
const HEARTH_NODE_FLAGS = ['--max-semi-space-size=1'];
/** Packages a fresh server that serves no metrics, thumbnails or terminal logs must not have loaded. */
const SHOULD_BE_LAZY = ['sharp', 'prom-client', 'pino-pretty', 'pg', '@opentelemetry/api'];

/** On SIGUSR2 the child writes its memory figures (JSON) to $HEARTH_PROBE_OUT. No hooks, no extra threads. */
const MEMORY_PROBE = `
import { readFileSync, writeFileSync } from 'node:fs';
process.on('SIGUSR2', () => {
  const st = readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp(k + ':\\\\s+(\\\\d+)').exec(st)?.[1] ?? NaN);
  const mu = process.memoryUsage();
  writeFileSync(process.env.HEARTH_PROBE_OUT, JSON.stringify({ rss: kb('VmRSS'), anon: kb('RssAnon'),
    heapUsed: mu.heapUsed, heapTotal: mu.heapTotal }));
});`;

/** Records every module file loaded (ESM through a load hook, CommonJS through require.cache) for SIGUSR2. */
const MODULE_PROBE = `
import Module, { register } from 'node:module';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const { port1, port2 } = new MessageChannel();
const files = new Set();
port1.on('message', (u) => { if (u.startsWith('file:')) files.add(fileURLToPath(u)); });
port1.unref();
register('data:text/javascript,' + encodeURIComponent(
  'let port; export function initialize(d) { port = d.port; }' +
  'export async function load(url, ctx, next) { port.postMessage(url); return next(url, ctx); }'),
  { data: { port: port2 }, transferList: [port2] });
process.on('SIGUSR2', () => {
  for (const f of Object.keys(Module._cache)) files.add(f);
  writeFileSync(process.env.HEARTH_PROBE_OUT, JSON.stringify([...files]));
});`;

let bundled: Promise<string> | undefined;

async function bundleChild(): Promise<string> {
  const { build } = await import('esbuild');
  // Two levels below the checkout, as src/*/ files are, so their `../../package.json` still resolves.
  const outdir = join(ROOT, 'node_modules', `.hearth-idle-rss-${process.pid}`);
  onCleanup(async () => rmSync(outdir, { recursive: true, force: true }));
  // splitting keeps dynamic imports (lazy modules) dynamic, as in the compiled dist/.
  await build({
    entryPoints: [join(ROOT, 'bench', 'child-server.ts')],
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outdir,
    outExtension: { '.js': '.mjs' },
    logLevel: 'silent',
  });
  return join(outdir, 'child-server.mjs');
}

const dataUrl = (code: string): string => `data:text/javascript,${encodeURIComponent(code)}`;

/**
 * Starts a server child with `execArgv` and the probe, waits `settleMs` after it is ready (reading its RSS every
 * 500 ms into `rssSamples`, in KiB), returns the probe's JSON.
 */
async function probeChild(
  engine: Engine,
  pgAdminUrl: string | undefined,
  execArgv: readonly string[],
  probe: string,
  settleMs: number,
  rssSamples: number[] = [],
): Promise<unknown> {
  const entry = await (bundled ??= bundleChild());
  const db = await freshDatabase(engine, pgAdminUrl);
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-idle-'));
  try {
    const configPath = join(dir, 'config.json');
    const { max_connections: _defaultPool, ...database } = db.config;
    writeFileSync(
      configPath,
      JSON.stringify({
        server_name: 'localhost',
        listeners: [{ port: 0, bind_addresses: ['127.0.0.1'] }],
        database,
        signing_key_path: join(dir, 'signing.key'),
        media_store_path: join(dir, 'media'),
        log_level: 'info',
        suppress_key_server_warning: true,
      }),
    );
    const out = join(dir, 'probe.json');
    const child = spawn(process.execPath, [...execArgv, '--import', dataUrl(probe), entry, configPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, HEARTH_PROBE_OUT: out },
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await new Promise<void>((resolve, reject) => {
        const lines = createInterface({ input: child.stdout });
        lines.on('line', (line) => {
          if (line.startsWith('{"urls"')) resolve();
        });
        child.once('exit', (code) =>
          reject(new Error(`idle server exited with ${code} before it was ready`)),
        );
      });
      child.stdout.resume();
      for (let waited = 0; waited < settleMs; waited += 500) {
        await sleep(500);
        const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid ?? 0}/status`, 'utf8'));
        rssSamples.push(Number(m?.[1] ?? Number.NaN));
      }
      child.kill('SIGUSR2');
      for (let i = 0; i < 100; i++) {
        await sleep(20);
        try {
          return JSON.parse(readFileSync(out, 'utf8')) as unknown;
        } catch {
          // not written (completely) yet
        }
      }
      throw new Error('the idle server did not answer the memory probe');
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await db.drop();
  }
}

interface MemoryFigures {
  rss: number;
  anon: number;
  heapUsed: number;
  heapTotal: number;
}

const MiB = (bytes: number): number => Math.round((bytes / (1024 * 1024)) * 10) / 10;

function packageOf(file: string): string {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  return m ? (m[1] as string) : 'hearth';
}

export default {
  name: 'idle-rss',
  description:
    'RSS and heap of a fresh idle server in its own process (default vs bin/hearth.js flags), ~5 min',
  async run({ engine, pgAdminUrl, log }) {
    // V8's memory reducer shrinks the heap of an idle process some 20-60 s after start (depending on when its first
    // full GC ran); the figure that counts is after it, so the server idles BENCH_IDLE_SETTLE_MS (default 70 s).
    const settleMs = Number(process.env.BENCH_IDLE_SETTLE_MS ?? 70_000);
    const rows: ResultRow[] = [];
    const cases: [string, readonly string[]][] = [
      ['node defaults', []],
      [HEARTH_NODE_FLAGS.join(' '), HEARTH_NODE_FLAGS],
    ];
    for (const [label, flags] of cases) {
      log(`${label}: starting, settling ${settleMs} ms`);
      const samples: number[] = [];
      const m = (await probeChild(
        engine,
        pgAdminUrl,
        flags,
        MEMORY_PROBE,
        settleMs,
        samples,
      )) as MemoryFigures;
      const settledAt = samples.findIndex((kb) => kb <= m.rss);
      rows.push({
        case: label,
        'RSS +5s MiB': MiB((samples[9] ?? Number.NaN) * 1024),
        'RSS settled MiB': MiB(m.rss * 1024),
        'settled after s': settledAt < 0 ? Number.NaN : (settledAt + 1) / 2,
        'anon MiB': MiB(m.anon * 1024),
        'heap used MiB': MiB(m.heapUsed),
        'heap total MiB': MiB(m.heapTotal),
      });
    }
    const files = (await probeChild(engine, pgAdminUrl, HEARTH_NODE_FLAGS, MODULE_PROBE, 500)) as string[];
    const byPackage = new Map<string, number>();
    for (const f of files) byPackage.set(packageOf(f), (byPackage.get(packageOf(f)) ?? 0) + 1);
    const top = [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 8);
    const unexpected = SHOULD_BE_LAZY.filter(
      (p) => byPackage.has(p) && !(p === 'pg' && engine === 'postgres'),
    );
    log(`${files.length} module files loaded; top: ${top.map(([p, n]) => `${p} ${n}`).join(', ')}`);
    log(`loaded though a fresh idle server does not use them: ${unexpected.join(', ') || 'none'}`);
    for (const r of rows) {
      r['files loaded'] = files.length;
      r['unused loaded'] = unexpected.join(',') || 'none';
    }
    return rows;
  },
} satisfies Scenario;
