/**
 * Scenario `sync-fanout`: N users (BENCH_FANOUT, default "50,500") long-poll GET /sync in ONE room while another
 * member sends BENCH_FANOUT_MESSAGES (default 100) messages one at a time; before each send every receiver has
 * answered the previous one and re-issued its poll (and SETTLE_MS passed, so all polls are parked in the notifier).
 * Figures: p50/p99/max of (receiver response fully arrived − sender's 2xx arrived), per receiver count, and the
 * server's peak RSS. The server runs in its own process (bench/child-server.ts), so its CPU and RSS are its own.
 * BENCH_CPU_PROF=<dir> runs it with `--cpu-prof` (summarise with bench/cpu-profile.ts); BENCH_STATEMENTS=1 turns
 * its metrics on and reports SQL statements per woken sync (the sender's statements included, divided out).
 * `cpu ms/msg` is the server process's CPU time per message (the send, the woken syncs and their re-issued polls),
 * `cpu ms/wake` that divided by the receivers: what bounds p50 on one event loop (about half the receivers' work).
 */
import http from 'node:http';
import { startChildServer, type ChildServer } from './federation-lib.js';
import {
  envInt,
  percentile,
  type BenchContext,
  type BenchUser,
  type ResultRow,
  type Scenario,
} from './lib.js';
import { sendText } from './initial-sync.js';
import { arrivalsOf, getJson, msSince, now, Parking, sawEvents, type Waiting } from './wake-lib.js';

/** SQL statements the server ran so far, by `operation table` (from its query timer metric). */
async function statements(server: ChildServer): Promise<Map<string, number>> {
  const text = await (await fetch(`${server.url}/_hearth/metrics`)).text();
  const out = new Map<string, number>();
  const re = /^hearth_db_query_duration_seconds_count\{operation="([^"]*)",table="([^"]*)"\} (\d+)/gm;
  for (const m of text.matchAll(re)) out.set(`${m[1]} ${m[2]}`, Number(m[3]));
  return out;
}

const POLL_TIMEOUT_MS = 30_000;
const SETTLE_MS = 100;
const WARMUP = 5;

interface Receiver extends Waiting {
  user: BenchUser;
  since: string;
}

async function fanOut(
  ctx: BenchContext,
  server: ChildServer,
  n: number,
  messages: number,
  countStatements: boolean,
): Promise<ResultRow> {
  const sender = await server.login('fan_sender');
  const users: BenchUser[] = [];
  for (let i = 0; i < n; i += 25) {
    const batch = Array.from({ length: Math.min(25, n - i) }, (_, j) => server.login(`fan${i + j}`));
    users.push(...(await Promise.all(batch)));
  }
  ctx.log(`${n} receivers joining one room`);
  const created = await sender.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
  const roomId = created.room_id as string;
  const rid = encodeURIComponent(roomId);
  for (const u of users) await u.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
  const agent = new http.Agent({ keepAlive: true, maxSockets: n + 10 });
  const receivers: Receiver[] = [];
  for (const user of users) {
    const first = await user.get(
      '/_matrix/client/v3/sync?timeout=0&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1%7D%7D%7D',
    );
    receivers.push({ user, since: first.next_batch as string, parked: false, seen: new Map() });
  }

  const parking = new Parking(receivers, SETTLE_MS, 10);
  let stopping = false;
  const pollLoop = async (r: Receiver): Promise<void> => {
    while (!stopping) {
      const url = `${server.url}/_matrix/client/v3/sync?since=${encodeURIComponent(r.since)}&timeout=${POLL_TIMEOUT_MS}`;
      const pending = getJson(agent, url, r.user.token as string);
      r.parked = true;
      parking.issued();
      const { body, arrived } = await pending;
      r.parked = false;
      r.since = body.next_batch as string;
      if (stopping) return;
      const join = (
        body.rooms as { join?: Record<string, { timeline?: { events: { event_id: string }[] } }> }
      )?.join;
      sawEvents(
        r,
        (join?.[roomId]?.timeline?.events ?? []).map((e) => e.event_id),
        arrived,
      );
    }
  };
  const loops = receivers.map((r) => pollLoop(r).catch((err: unknown) => parking.fail(err)));
  const allParked = () => parking.all();

  const lag: number[] = [];
  let early = 0;
  let before: Map<string, number> | undefined;
  let cpuBefore = 0;
  ctx.log(`${n} polls parked; ${WARMUP} warm-up + ${messages} messages`);
  for (let m = 0; m < WARMUP + messages; m++) {
    await allParked();
    if (m === WARMUP && countStatements) before = await statements(server);
    if (m === WARMUP) cpuBefore = server.cpuMs();
    const eventId = await sendText(sender, roomId, `fan-out ${m}`);
    const tSent = now();
    const got = await arrivalsOf(receivers, eventId, `message ${m}: not every receiver woke in 20 s`, 20_000);
    for (const r of receivers) r.seen.delete(eventId);
    if (m < WARMUP) continue;
    for (const arrived of got) {
      const d = msSince(tSent, arrived);
      if (d < 0) early++;
      lag.push(Math.max(0, d));
    }
  }
  // Counted before the polls are released, so only the woken syncs (and the sends) are in it.
  await allParked();
  const cpuPerMessage = (server.cpuMs() - cpuBefore) / messages;
  let perSync: number | undefined;
  if (before) {
    const after = await statements(server);
    let total = 0;
    const per: string[] = [];
    for (const [k, v] of after) {
      const d = (v - (before.get(k) ?? 0)) / (messages * n);
      if (d <= 0) continue;
      total += d;
      per.push(`${k} ${d.toFixed(2)}`);
    }
    perSync = total;
    process.stderr.write(`statements per woken sync (${n} receivers, sends included): ${per.join(', ')}\n`);
  }
  stopping = true;
  agent.destroy();
  await Promise.allSettled(loops);
  return {
    case: `${n} receivers, 1 room`,
    wakes: lag.length,
    'p50 ms': percentile(lag, 50),
    'p99 ms': percentile(lag, 99),
    'max ms': percentile(lag, 100),
    'before 2xx': early,
    'server peak MiB': server.peakRssMiB(),
    // The server's CPU per message: the send and the n woken syncs (and their re-issued polls), and per wake.
    'cpu ms/msg': Math.round(cpuPerMessage * 10) / 10,
    'cpu ms/wake': Math.round((cpuPerMessage / n) * 100) / 100,
    ...(perSync !== undefined ? { 'stmts/sync': perSync } : {}),
  };
}

const syncFanout: Scenario = {
  name: 'sync-fanout',
  description:
    'N users long-poll /sync in one room; 100 sends one at a time: send 2xx → each receiver response',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const sizes = (process.env.BENCH_FANOUT ?? '50,500').split(',').map(Number);
    const messages = envInt('BENCH_FANOUT_MESSAGES', 100);
    const profDir = process.env.BENCH_CPU_PROF;
    const countStatements = process.env.BENCH_STATEMENTS === '1';
    const rows: ResultRow[] = [];
    for (const n of sizes) {
      ctx.log(`starting the server in its own process with ${n + 1} users`);
      const localparts = ['fan_sender', ...Array.from({ length: n }, (_, i) => `fan${i}`)];
      const server = await startChildServer(ctx.engine, ctx.pgAdminUrl, localparts, {
        execArgv: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
        config: countStatements ? { enable_metrics: true } : {},
      });
      try {
        const idle = server.rssMiB();
        rows.push({ ...(await fanOut(ctx, server, n, messages, countStatements)), 'server idle MiB': idle });
      } finally {
        await server.stop();
      }
    }
    return rows;
  },
};

export default syncFanout;
