/**
 * Shared pieces of the benchmarks: a real Hearth on an ephemeral port over a fresh SQLite file or PostgreSQL
 * database, users, a small HTTP client, percentiles and a results table. Everything a benchmark creates is
 * registered for cleanup, so a run (or Ctrl-C) leaves no server, database, cluster or temp directory behind.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { createAccount } from '../src/accounts/register.js';
import { validateConfig } from '../src/config/load.js';
import { startHomeserver, type Homeserver } from '../src/homeserver.js';
import { generateSelfSignedCertificate } from '../src/keys/tls-certificate.js';
import { createLogger } from '../src/log.js';
import type { Engine } from '../src/storage/dialect.js';

export type { Engine };

export const SERVER_NAME = 'bench.local';

// ---------------------------------------------------------------------------------------------------------------
// Cleanup

type Cleanup = () => Promise<void> | void;
const cleanups: Cleanup[] = [];

/** Registers `fn` to run at exit (last registered runs first); returns a function that runs it now, once. */
export function onCleanup(fn: Cleanup): () => Promise<void> {
  let done = false;
  const run = async (): Promise<void> => {
    if (done) return;
    done = true;
    const i = cleanups.indexOf(run);
    if (i >= 0) cleanups.splice(i, 1);
    await fn();
  };
  cleanups.push(run);
  return run;
}

let cleaning: Promise<void> = Promise.resolve();

/**
 * Runs every registered cleanup, newest first; errors are reported, not thrown. Calls are serialised, so a signal
 * arriving while the normal end-of-run cleanup is going on does not run two cleanups at once.
 */
export function cleanupAll(): Promise<void> {
  cleaning = cleaning.then(drainCleanups);
  return cleaning;
}

async function drainCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups[cleanups.length - 1] as Cleanup;
    try {
      await fn();
    } catch (err) {
      console.error(`cleanup failed: ${(err as Error).message}`);
    }
    // A cleanup that threw before removing itself must not loop forever.
    if (cleanups[cleanups.length - 1] === fn) cleanups.pop();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL

interface PgCluster {
  url: string;
  stop(): void;
}

interface PgClusterModule {
  pgAvailable(): boolean;
  startPgCluster(): Promise<PgCluster>;
}

/**
 * An admin URL for PostgreSQL: HEARTH_TEST_PG_URL when set, otherwise a throwaway cluster started here (and
 * stopped at cleanup).
 */
export async function postgresAdminUrl(): Promise<string> {
  const fromEnv = process.env.HEARTH_TEST_PG_URL;
  if (fromEnv) return fromEnv;
  const spec = new URL('../scripts/pg-cluster.mjs', import.meta.url).href;
  const mod = (await import(spec)) as PgClusterModule;
  if (!mod.pgAvailable()) {
    throw new Error(
      'PostgreSQL 15 binaries not found (set HEARTH_PG_BIN or HEARTH_TEST_PG_URL, or use --engine sqlite)',
    );
  }
  const cluster = await mod.startPgCluster();
  onCleanup(() => cluster.stop());
  process.stderr.write(`started a throwaway PostgreSQL cluster at ${cluster.url}\n`);
  return cluster.url;
}

export interface BenchDatabase {
  config: { engine: Engine; path?: string; url?: string; max_connections: number };
  drop(): Promise<void>;
}

export async function freshDatabase(engine: Engine, pgAdminUrl: string | undefined): Promise<BenchDatabase> {
  if (engine === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-db-'));
    return {
      config: { engine: 'sqlite', path: join(dir, 'homeserver.db'), max_connections: 10 },
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  if (!pgAdminUrl) throw new Error('no PostgreSQL admin URL');
  const name = `hearth_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: pgAdminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(pgAdminUrl);
  url.pathname = `/${name}`;
  return {
    config: { engine: 'postgres', url: url.toString(), max_connections: 10 },
    drop: async () => {
      const c = new pg.Client({ connectionString: pgAdminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

export interface Json {
  [key: string]: unknown;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status} ${body.slice(0, 300)}`);
    this.name = 'HttpError';
  }
}

/**
 * A client over Node's global fetch (undici: connections are kept alive and reused). `call` throws on a non-2xx
 * status, so a benchmark never counts a failed request as a message.
 */
export class BenchClient {
  constructor(
    readonly baseUrl: string,
    public token?: string,
  ) {}

  async call(method: string, path: string, body?: unknown): Promise<Json> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(this.baseUrl + path, { method, headers, body: payload });
    const text = await res.text();
    if (res.status < 200 || res.status > 299) throw new HttpError(res.status, text, `${method} ${path}`);
    return text ? (JSON.parse(text) as Json) : {};
  }

  get(path: string): Promise<Json> {
    return this.call('GET', path);
  }
  post(path: string, body: unknown = {}): Promise<Json> {
    return this.call('POST', path, body);
  }
  put(path: string, body: unknown = {}): Promise<Json> {
    return this.call('PUT', path, body);
  }
}

export interface BenchUser extends BenchClient {
  userId: string;
  deviceId: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Server

export interface BenchServer {
  engine: Engine;
  hs: Homeserver;
  url: string;
  client(token?: string): BenchClient;
  /** Creates a user directly in the database and logs it in over HTTP. */
  user(localpart: string): Promise<BenchUser>;
  /** Creates `n` users `${prefix}0`..`${prefix}${n-1}` in parallel. */
  users(prefix: string, n: number): Promise<BenchUser[]>;
  /** Creates a room owned by `owner`, joined by every one of `members`; returns the room id. */
  room(owner: BenchUser, members?: BenchUser[]): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts Hearth on 127.0.0.1 with an ephemeral port over a fresh database of `engine`, with rate limiting off and
 * logging silent (HEARTH_BENCH_LOG overrides the level). For PostgreSQL, `pgAdminUrl` is the server to create the
 * database on (see postgresAdminUrl).
 */
export async function startBenchServer(
  engine: Engine,
  pgAdminUrl?: string,
  opts: { federation?: boolean } = {},
): Promise<BenchServer> {
  const db = await freshDatabase(engine, pgAdminUrl);
  const dropDb = onCleanup(() => db.drop());
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-bench-data-'));
  const removeData = onCleanup(() => rmSync(dataDir, { recursive: true, force: true }));
  const federation = opts.federation ? await federationConfig(dataDir) : undefined;
  const serverName = federation?.server_name ?? SERVER_NAME;
  const config = validateConfig(
    {
      server_name: serverName,
      ...federation,
      listeners: [{ port: 0, bind_addresses: ['127.0.0.1'] }, ...(federation?.listeners ?? [])],
      database: db.config,
      signing_key_path: join(dataDir, 'signing.key'),
      media_store_path: join(dataDir, 'media'),
      log_level: process.env.HEARTH_BENCH_LOG ?? 'silent',
      rate_limiting: { enabled: false },
      shutdown_grace_ms: 2000,
    },
    dataDir,
  );
  const hs = await startHomeserver(config, { logger: createLogger(config.log_level) });
  const stopHs = onCleanup(() => hs.close());
  const url = hs.urls[0] as string;
  const password = 'bench password';

  const server: BenchServer = {
    engine,
    hs,
    url,
    client: (token) => new BenchClient(url, token),
    async user(localpart) {
      await createAccount(hs.storage.db, { localpart, serverName, password });
      const c = new BenchClient(url);
      const res = await c.post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: localpart },
        password,
      });
      c.token = res.access_token as string;
      return Object.assign(c, { userId: res.user_id as string, deviceId: res.device_id as string });
    },
    users(prefix, n) {
      return Promise.all(Array.from({ length: n }, (_, i) => server.user(`${prefix}${i}`)));
    },
    async room(owner, members = []) {
      const others = members.filter((m) => m.userId !== owner.userId);
      const created = await owner.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const roomId = created.room_id as string;
      const rid = encodeURIComponent(roomId);
      for (const m of others) await m.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
      return roomId;
    },
    async close() {
      // Order matters: the server lets go of the database before it is dropped.
      await stopHs();
      await dropDb();
      await removeData();
    },
  };
  return server;
}

/** A port free right now on 127.0.0.1 (a federating server's name must name its port before it starts). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (!addr || typeof addr !== 'object') throw new Error('no free port');
  return addr.port;
}

/**
 * The config of a server federating on loopback: named `127.0.0.1:<port>` (an IP literal with its port, so other
 * servers connect straight to it), a TLS federation listener with a fresh self-signed certificate, certificate checks
 * off and loopback whitelisted. Servers of the same run find each other without DNS or well-known.
 */
export async function federationConfig(dataDir: string): Promise<{
  server_name: string;
  listeners: { port: number; bind_addresses: string[]; tls: boolean; resources: { names: string[] }[] }[];
  tls_certificate_path: string;
  tls_private_key_path: string;
  federation_verify_certificates: boolean;
  ip_range_whitelist: string[];
}> {
  const port = await freePort();
  const cert = join(dataDir, 'tls.crt');
  const key = join(dataDir, 'tls.key');
  const { certPem, keyPem } = generateSelfSignedCertificate({
    commonName: 'localhost',
    altNames: ['localhost', '127.0.0.1'],
  });
  writeFileSync(cert, certPem);
  writeFileSync(key, keyPem, { mode: 0o600 });
  return {
    server_name: `127.0.0.1:${port}`,
    listeners: [{ port, bind_addresses: ['127.0.0.1'], tls: true, resources: [{ names: ['federation'] }] }],
    tls_certificate_path: cert,
    tls_private_key_path: key,
    federation_verify_certificates: false,
    ip_range_whitelist: ['127.0.0.1/32'],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

/** What a scenario gets: a fresh server of one engine (closed by the runner afterwards) and a logger. */
export interface BenchContext {
  engine: Engine;
  server: BenchServer;
  /** The PostgreSQL admin URL of the run (engine postgres), for scenarios that start more servers. */
  pgAdminUrl?: string | undefined;
  /** Progress lines (to stderr, so stdout stays the results table). */
  log(message: string): void;
}

/** One benchmark, in its own file under bench/, registered by name in bench/run.ts. */
export interface Scenario {
  name: string;
  description: string;
  /** The runner starts `ctx.server` with a TLS federation listener (see federationConfig). */
  federation?: boolean;
  /** Runs the scenario against `ctx.server`; returns result rows (figures are reported, never asserted). */
  run(ctx: BenchContext): Promise<ResultRow[]>;
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring

/** Runs `fn` and records its duration in milliseconds into `into`. */
export async function timed<T>(into: number[], fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await fn();
  into.push(performance.now() - t0);
  return result;
}

/** The p-th percentile (0..100, nearest-rank) of `values`; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

/** A positive integer from the environment, or `fallback`. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Results

/** One line of the results table. Numbers are printed with sensible precision; strings as they are. */
export type ResultRow = Record<string, string | number>;

function formatCell(v: string | number | undefined): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  if (Number.isNaN(v)) return '-';
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** Prints rows as an aligned text table; columns are the union of the rows' keys, in first-seen order. */
export function printTable(rows: readonly ResultRow[], out: (line: string) => void = console.log): void {
  if (rows.length === 0) return;
  const columns: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
  const cells = rows.map((r) => columns.map((c) => formatCell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] as string).length)));
  const numeric = columns.map((c) => rows.every((r) => r[c] === undefined || typeof r[c] === 'number'));
  const line = (vals: string[]): string =>
    vals
      .map((v, i) => (numeric[i] ? v.padStart(widths[i] as number) : v.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  out(line(columns));
  out(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of cells) out(line(row));
}

// ---------------------------------------------------------------------------------------------------------------
// Server-side figures (used by the sync benchmarks)

/** Resident set size of this process in MiB. The server runs in-process, so this is server plus benchmark client. */
export function rssMiB(): number {
  return process.memoryUsage().rss / (1024 * 1024);
}

/** Counts the SQL statements the server's Kysely instance runs (statements inside transactions are not seen). */
export interface QueryCounter {
  readonly count: number;
  reset(): void;
  /** With BENCH_SQL_TOP=<n>: the n most frequent statements since the last reset, as "count  sql" lines. */
  top(): string[];
}

/** Wraps the executor of `server`'s database so every statement is counted; for figures only, never for tests. */
export function countQueries(server: BenchServer): QueryCounter {
  const executor = server.hs.storage.db.getExecutor();
  const original = executor.executeQuery.bind(executor);
  let count = 0;
  const topN = envInt('BENCH_SQL_TOP', 0);
  const bySql = new Map<string, number>();
  executor.executeQuery = (query) => {
    count++;
    if (topN > 0) bySql.set(query.sql, (bySql.get(query.sql) ?? 0) + 1);
    return original(query);
  };
  return {
    get count() {
      return count;
    },
    reset() {
      count = 0;
      bySql.clear();
    },
    top() {
      return [...bySql]
        .sort((a, b) => b[1] - a[1])
        .slice(0, topN)
        .map(([text, n]) => `${String(n).padStart(6)}  ${text.replace(/\s+/g, ' ').slice(0, 300)}`);
    },
  };
}

/**
 * Server-side durations (ms) of the requests whose path starts with `prefix`: from the HTTP server's 'request'
 * event (headers parsed, before routing) to the response's 'finish' (last byte handed to the socket).
 */
export interface ServerTimer {
  /** Returns the durations recorded since the last call and forgets them. */
  take(): number[];
}

export function serverTimer(server: BenchServer, prefix: string): ServerTimer {
  let durations: number[] = [];
  for (const app of server.hs.apps) {
    app.server.prependListener('request', (req, res) => {
      if (!req.url?.startsWith(prefix)) return;
      const t0 = performance.now();
      res.once('finish', () => durations.push(performance.now() - t0));
    });
  }
  return {
    take() {
      const out = durations;
      durations = [];
      return out;
    },
  };
}

/** Runs `fn` over `items` with at most `concurrency` calls in flight; results in input order. */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

/**
 * With BENCH_CPU_PROF=<dir>: runs `fn` under the V8 CPU profiler of this process (for scenarios whose server runs
 * in-process) and writes <dir>/<name>.cpuprofile (summarise with bench/cpu-profile.ts). Otherwise just runs `fn`.
 */
export async function profiled<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const dir = process.env.BENCH_CPU_PROF;
  if (!dir) return fn();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
}
