/**
 * Scenario `sliding-sync-initial`: the first simplified sliding sync response (MSC4186) of a user in many busy rooms
 * (20 members, 50 messages each by default), for a list range [0,19] with timeline_limit 1 and a few required_state
 * types. The rooms are built in stages, and each stage is timed (11 runs, each a new connection: the first on the
 * freshly started process, `run1`, and the median and max of the others), so the figures show whether the first
 * response depends on the number of rooms.
 *
 * The data is written straight into a database of its own (the server's createRoom service over a bare Storage, one
 * transaction per room, as initial-sync does); then a Hearth is started on it in its own process
 * (bench/child-server.ts, so RSS and CPU are the server's), and timing starts only once that process is idle (its CPU
 * time stops moving: start-up work such as a federation fan-out catching up is over). Each stage restarts the server
 * on the grown database.
 *
 * BENCH_SLIDING_ROOMS: the room counts to time at, comma-separated (default "200,2000"); BENCH_SYNC_MEMBERS
 * (default 20), BENCH_SYNC_MESSAGES (default 50), BENCH_SLIDING_RUNS (requests timed per stage, default 11).
 * BENCH_CPU_PROF=<dir> runs the server with `--cpu-prof` into <dir>;
 * BENCH_STATEMENTS=1 turns the server's metrics on and reports SQL statements per request.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { startChildServer, type ChildServer } from './federation-lib.js';
import {
  envInt,
  freshDatabase,
  onCleanup,
  percentile,
  SERVER_NAME,
  type BenchContext,
  type Json,
  type ResultRow,
  type Scenario,
} from './lib.js';
import { createAccount } from '../src/accounts/register.js';
import { RoomWriter, type NewEvent } from '../src/input/room-writer.js';
import { loadOrCreateSigningKey } from '../src/keys/signing-key.js';
import type { JsonObject } from '../src/rooms/event.js';
import { createRoom, memberContent } from '../src/roomsvc/create-room.js';
import { openStorage } from '../src/storage/db.js';

export const SLIDING_PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';
const RUNS = envInt('BENCH_SLIDING_RUNS', 11);

/** A RoomWriter whose createRoom commits `extra` (joins, messages) in the room's creating transaction. */
class PrefilledRoomWriter extends RoomWriter {
  extra: NewEvent[] = [];
  override createRoom(
    versionId: string,
    creator: string,
    createContent: JsonObject,
    rest: (roomId: string) => NewEvent[],
  ): ReturnType<RoomWriter['createRoom']> {
    const extra = this.extra;
    return super.createRoom(versionId, creator, createContent, (roomId) => [...rest(roomId), ...extra]);
  }
}

function roomCounts(): number[] {
  const raw = process.env.BENCH_SLIDING_ROOMS ?? '200,2000';
  const counts = raw.split(',').map((s) => Number(s.trim()));
  if (counts.some((n) => !Number.isInteger(n) || n <= 0)) {
    throw new Error(`BENCH_SLIDING_ROOMS must be positive integers separated by commas, got ${raw}`);
  }
  return [...new Set(counts)].sort((a, b) => a - b);
}

export const FIRST_PAGE = {
  lists: {
    all: {
      ranges: [[0, 19]],
      timeline_limit: 1,
      required_state: [
        ['m.room.name', ''],
        ['m.room.avatar', ''],
        ['m.room.topic', ''],
        ['m.room.encryption', ''],
        ['m.room.member', '$ME'],
      ],
    },
  },
};

/** POSTs a sliding sync request; returns the body, client-side ms and the response size. */
export async function timedSlide(
  url: string,
  user: { token?: string | undefined },
  body: Json,
  query = '',
): Promise<{ body: Json; ms: number; bytes: number }> {
  const send = (): Promise<Response> =>
    fetch(url + SLIDING_PATH + query, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.token ?? ''}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  let t0 = performance.now();
  // A keep-alive socket left idle through a long build may have been closed by the server under us: retry once, on
  // a new connection, and time that.
  const res = await send().catch(async (err: unknown) => {
    const code = ((err as { cause?: { code?: unknown } }).cause ?? {}).code;
    if (code !== 'ECONNRESET' && code !== 'UND_ERR_SOCKET') throw err;
    t0 = performance.now();
    return send();
  });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200) throw new Error(`POST ${SLIDING_PATH}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return { body: JSON.parse(text) as Json, ms, bytes: Buffer.byteLength(text) };
}

/** SQL statements the server ran so far, by `operation table` (from its query timer metric; enable_metrics on). */
export async function statements(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/_hearth/metrics`)).text();
  const out = new Map<string, number>();
  const re = /^hearth_db_query_duration_seconds_count\{operation="([^"]*)",table="([^"]*)"\} (\d+)/gm;
  for (const m of text.matchAll(re)) out.set(`${m[1]} ${m[2]}`, Number(m[3]));
  return out;
}

/** Statements between two snapshots, divided by `per`: total and a `op table n` breakdown. */
export function statementDelta(
  before: Map<string, number>,
  after: Map<string, number>,
  per: number,
): { total: number; detail: string } {
  const parts: string[] = [];
  let total = 0;
  for (const [k, v] of after) {
    const d = (v - (before.get(k) ?? 0)) / per;
    if (d <= 0) continue;
    total += d;
    parts.push(`${k} ${d.toFixed(1)}`);
  }
  return { total, detail: parts.join(', ') };
}

/** CPU time (user + system, clock ticks) the process has used. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * Waits until the process used at most one tick of CPU in each of two consecutive 250 ms windows and (PostgreSQL,
 * whose server does the work of a query while the process waits) `dbActive` reports no running statement (max
 * 300 s).
 */
export async function waitIdle(pid: number, dbActive?: () => Promise<number>): Promise<number> {
  const t0 = performance.now();
  let quiet = 0;
  let last = cpuTicks(pid);
  while (quiet < 2 && performance.now() - t0 < 300_000) {
    await new Promise((r) => setTimeout(r, 250));
    const now = cpuTicks(pid);
    const active = dbActive ? await dbActive() : 0;
    quiet = now - last <= 1 && active === 0 ? quiet + 1 : 0;
    last = now;
  }
  return performance.now() - t0;
}

/** Statements running right now in the bench database (other than this query), for waitIdle. */
async function pgActivity(
  url: string,
): Promise<{ active: () => Promise<number>; close: () => Promise<void> }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    active: async () => {
      const r = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()`,
      );
      return Number(r.rows[0]?.n ?? 0);
    },
    close: () => client.end(),
  };
}

interface Builder {
  writer: PrefilledRoomWriter;
  deps: Parameters<typeof createRoom>[0];
  close(): Promise<void>;
}

async function openBuilder(database: Parameters<typeof openStorage>[0], keyPath: string): Promise<Builder> {
  const storage = await openStorage(database);
  const writer = new PrefilledRoomWriter(storage, SERVER_NAME, loadOrCreateSigningKey(keyPath));
  return { writer, deps: { storage, writer, serverName: SERVER_NAME }, close: () => storage.close() };
}

const slidingSyncInitial: Scenario = {
  name: 'sliding-sync-initial',
  description: 'first sliding sync response, range [0,19], timeline 1, of a user in 200 and 2,000 rooms',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const counts = roomCounts();
    const nMembers = envInt('BENCH_SYNC_MEMBERS', 20);
    const nMessages = envInt('BENCH_SYNC_MESSAGES', 50);
    const profDir = process.env.BENCH_CPU_PROF;
    const countStatements = process.env.BENCH_STATEMENTS === '1';
    const poolSize = Math.max(nMembers - 1, Math.min(3 * nMembers, 60));
    const db = await freshDatabase(ctx.engine, ctx.pgAdminUrl);
    const dropDb = onCleanup(() => db.drop());
    const dataDir = mkdtempSync(join(tmpdir(), 'hearth-bench-ss-'));
    const removeData = onCleanup(() => rmSync(dataDir, { recursive: true, force: true }));
    const keyPath = join(dataDir, 'signing.key');
    const hero = `@hero:${SERVER_NAME}`;
    const pool = Array.from({ length: poolSize }, (_, i) => `@member${i}:${SERVER_NAME}`);
    const rows: ResultRow[] = [];
    try {
      let builder: Builder | undefined = await openBuilder(db.config, keyPath);
      for (const localpart of ['hero', ...pool.map((u) => u.slice(1, u.indexOf(':')))])
        await createAccount(builder.deps.storage.db, {
          localpart,
          serverName: SERVER_NAME,
          password: 'bench password',
        });
      let built = 0;
      for (const target of counts) {
        const b: Builder = builder ?? (await openBuilder(db.config, keyPath));
        builder = b;
        const t0 = performance.now();
        ctx.log(`building rooms ${built}..${target - 1} (${nMembers} members, ${nMessages} messages each)`);
        for (; built < target; built++) {
          const i = built;
          const others = Array.from(
            { length: nMembers - 1 },
            (_, k) => pool[(i * 3 + k) % poolSize] as string,
          );
          const members = [hero, ...others];
          b.writer.extra = [
            ...(await Promise.all(
              others.map(async (m) => ({
                type: 'm.room.member',
                state_key: m,
                sender: m,
                content: await memberContent(b.deps.storage, m, 'join'),
              })),
            )),
            ...Array.from({ length: nMessages }, (_, j) => ({
              type: 'm.room.message',
              sender: members[j % members.length] as string,
              content: { msgtype: 'm.text', body: `message ${j} in room ${i}` },
            })),
          ];
          await createRoom(b.deps, {
            creator: hero,
            visibility: 'private',
            preset: 'public_chat',
            name: `Room ${i}`,
            topic: `Topic of room ${i}`,
            invite: [],
            isDirect: false,
            initialState: [],
            creationContent: {},
            roomVersion: '10',
          });
          if ((built + 1) % 200 === 0) ctx.log(`  ${built + 1}/${target} rooms`);
        }
        await b.close();
        builder = undefined;
        ctx.log(`built in ${((performance.now() - t0) / 1000).toFixed(1)} s; starting the server`);
        const server: ChildServer = await startChildServer(ctx.engine, ctx.pgAdminUrl, [], {
          database: db,
          execArgv: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
          config: {
            server_name: SERVER_NAME,
            signing_key_path: keyPath,
            ...(countStatements ? { enable_metrics: true } : {}),
          },
        });
        try {
          const user = await server.login('hero');
          const activity = db.config.url ? await pgActivity(db.config.url) : undefined;
          const idleMs = await waitIdle(server.pid, activity?.active).finally(() => activity?.close());
          ctx.log(`server idle after ${idleMs.toFixed(0)} ms (RSS ${server.rssMiB().toFixed(0)} MiB)`);
          const before = countStatements ? await statements(server.url) : undefined;
          const client: number[] = [];
          let bytes = 0;
          for (let run = 0; run < RUNS; run++) {
            const r = await timedSlide(server.url, user, {
              ...FIRST_PAGE,
              conn_id: `initial-${target}-${run}`,
            });
            const n = Object.keys((r.body.rooms as Json | undefined) ?? {}).length;
            if (n !== Math.min(20, target)) throw new Error(`${n} rooms in the first response, expected 20`);
            client.push(r.ms);
            bytes = r.bytes;
          }
          const row: ResultRow = {
            case: `range [0,19], ${target} rooms`,
            rooms: target,
            // The first request of a fresh process (cold JIT and caches), then the running server's.
            'run1 ms': client[0] as number,
            'median ms': percentile(client.slice(1), 50),
            'max ms': percentile(client.slice(1), 100),
            KiB: Math.round(bytes / 1024),
            'server RSS MiB': Math.round(server.rssMiB()),
            'server peak MiB': Math.round(server.peakRssMiB()),
          };
          if (before) {
            const d = statementDelta(before, await statements(server.url), RUNS);
            row['SQL/req'] = Math.round(d.total);
            ctx.log(`statements per request: ${d.detail}`);
          }
          rows.push(row);
        } finally {
          await server.stop();
        }
      }
      return rows;
    } finally {
      await dropDb();
      await removeData();
    }
  },
};

export default slidingSyncInitial;
