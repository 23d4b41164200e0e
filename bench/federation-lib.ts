/**
 * Shared pieces of the federation benchmarks: a second Hearth in a child process (bench/child-server.ts) that
 * federates with the runner's server on loopback, its peak RSS from /proc, and logging in to it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  BenchClient,
  federationConfig,
  freshDatabase,
  onCleanup,
  type BenchDatabase,
  type BenchUser,
  type Engine,
} from './lib.js';

export interface ChildServer {
  url: string;
  serverName: string;
  pid: number;
  /** Logs in one of the accounts created at start. */
  login(localpart: string): Promise<BenchUser>;
  /** Peak resident set size of the process so far (VmHWM), in MiB. */
  peakRssMiB(): number;
  rssMiB(): number;
  /** CPU time (user + system) the process has used so far, in ms (clock-tick resolution). */
  cpuMs(): number;
  stop(): Promise<void>;
}

/** utime + stime of a process from /proc/<pid>/stat, in ms (assuming the usual 100 ticks per second). */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function procStatusMiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Starts a federating Hearth of `engine` in its own process with the accounts `localparts`. */
export async function startChildServer(
  engine: Engine,
  pgAdminUrl: string | undefined,
  localparts: readonly string[],
  opts: { execArgv?: readonly string[]; config?: Record<string, unknown>; database?: BenchDatabase } = {},
): Promise<ChildServer> {
  // A database the caller passes (already filled) stays the caller's to drop.
  const db = opts.database ?? (await freshDatabase(engine, pgAdminUrl));
  const dropDb = opts.database ? async () => undefined : onCleanup(() => db.drop());
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-bench-child-'));
  const removeData = onCleanup(() => rmSync(dataDir, { recursive: true, force: true }));
  const federation = await federationConfig(dataDir);
  const configPath = join(dataDir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      ...federation,
      listeners: [{ port: 0, bind_addresses: ['127.0.0.1'] }, ...federation.listeners],
      database: db.config,
      signing_key_path: join(dataDir, 'signing.key'),
      media_store_path: join(dataDir, 'media'),
      log_level: process.env.HEARTH_BENCH_LOG ?? 'silent',
      rate_limiting: { enabled: false },
      shutdown_grace_ms: 2000,
      ...opts.config,
    }),
  );
  const script = new URL('./child-server.ts', import.meta.url).pathname;
  const child: ChildProcess = spawn(
    process.execPath,
    [...(opts.execArgv ?? []), '--import', 'tsx', script, configPath, ...localparts],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stopChild = onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  });
  const urls = await new Promise<string[]>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.once('line', (line) => {
      try {
        resolve((JSON.parse(line) as { urls: string[] }).urls);
      } catch (err) {
        reject(err as Error);
      }
    });
    child.once('exit', (code) => reject(new Error(`child server exited with ${code} before it was ready`)));
  });
  const url = urls[0] as string;
  const pid = child.pid as number;
  return {
    url,
    serverName: federation.server_name,
    pid,
    async login(localpart) {
      const c = new BenchClient(url);
      const res = await c.post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: localpart },
        password: 'bench password',
      });
      c.token = res.access_token as string;
      return Object.assign(c, { userId: res.user_id as string, deviceId: res.device_id as string });
    },
    peakRssMiB: () => procStatusMiB(pid, 'VmHWM'),
    rssMiB: () => procStatusMiB(pid, 'VmRSS'),
    cpuMs: () => procCpuMs(pid),
    async stop() {
      await stopChild();
      await dropDb();
      await removeData();
    },
  };
}
