/**
 * Scenario `send`: messages per second through PUT /rooms/{roomId}/send over real HTTP, against a Hearth in its
 * own process (bench/child-server.ts, so CPU and RSS are the server's), in three shapes: one sender in one room
 * (sequential requests), 20 concurrent senders in one room and 20 senders in 20 rooms. BENCH_MESSAGES (default
 * 1000) is the number of messages per case; BENCH_SENDERS (default 20) the number of concurrent senders.
 * BENCH_CPU_PROF=<dir> runs the server with `--cpu-prof` into <dir> (summarise with bench/cpu-profile.ts);
 * A first row times GET /account/whoami the same way (an authenticated request that writes nothing): the floor of
 * HTTP, client and machine load under the sends' figures.
 * BENCH_STATEMENTS=1 turns the server's metrics on and reports SQL statements per message (the query timer costs
 * a little, so leave it off for throughput figures).
 */
import { performance } from 'node:perf_hooks';
import { startChildServer, type ChildServer } from './federation-lib.js';
import {
  envInt,
  percentile,
  timed,
  type BenchContext,
  type BenchUser,
  type ResultRow,
  type Scenario,
} from './lib.js';

const WARMUP_PER_SENDER = 3;

let txnCounter = 0;

async function sendOne(user: BenchUser, roomId: string, body: string): Promise<void> {
  const rid = encodeURIComponent(roomId);
  const txn = `b${++txnCounter}`;
  const res = await user.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/${txn}`, {
    msgtype: 'm.text',
    body,
  });
  if (typeof res.event_id !== 'string') throw new Error(`send returned no event_id: ${JSON.stringify(res)}`);
}

/** SQL statements the server ran so far, by `operation table` (from its query timer metric). */
async function statements(server: ChildServer): Promise<Map<string, number>> {
  const text = await (await fetch(`${server.url}/_hearth/metrics`)).text();
  const out = new Map<string, number>();
  const re = /^hearth_db_query_duration_seconds_count\{operation="([^"]*)",table="([^"]*)"\} (\d+)/gm;
  for (const m of text.matchAll(re)) out.set(`${m[1]} ${m[2]}`, Number(m[3]));
  return out;
}

/** Each sender sends `perSender` messages one after another into its room; all senders run at once. */
async function measure(
  label: string,
  server: ChildServer,
  senders: readonly { user: BenchUser; roomId: string }[],
  perSender: number,
  countStatements: boolean,
): Promise<ResultRow> {
  // Warm-up (not measured): JIT, connection set-up, room heads cached.
  await Promise.all(
    senders.map(async (s) => {
      for (let i = 0; i < WARMUP_PER_SENDER; i++) await sendOne(s.user, s.roomId, `warm-up ${i}`);
    }),
  );
  const before = countStatements ? await statements(server) : undefined;
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    senders.map(async (s, n) => {
      for (let i = 0; i < perSender; i++) {
        await timed(latencies, () => sendOne(s.user, s.roomId, `message ${i} from sender ${n}`));
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const row: ResultRow = {
    case: label,
    messages: latencies.length,
    seconds,
    'msg/s': latencies.length / seconds,
    'p50 ms': percentile(latencies, 50),
    'p99 ms': percentile(latencies, 99),
    'server peak MiB': server.peakRssMiB(),
  };
  if (before) {
    const after = await statements(server);
    const per: string[] = [];
    let total = 0;
    for (const [k, v] of after) {
      const d = (v - (before.get(k) ?? 0)) / latencies.length;
      if (d <= 0) continue;
      total += d;
      per.push(`${k} ${d.toFixed(2)}`);
    }
    row['stmts/msg'] = total;
    process.stderr.write(`statements per message (${label}): ${per.join(', ')}\n`);
  }
  return row;
}

/** Creates a room owned by `owner`, joined by every one of `members`; returns the room id. */
async function createRoom(owner: BenchUser, members: readonly BenchUser[] = []): Promise<string> {
  const created = await owner.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
  const roomId = created.room_id as string;
  const rid = encodeURIComponent(roomId);
  for (const m of members) {
    if (m.userId !== owner.userId) await m.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
  }
  return roomId;
}

const send: Scenario = {
  name: 'send',
  description:
    'PUT /send throughput: 1 sender/1 room, N senders/1 room, N senders/N rooms (server in a child)',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const messages = envInt('BENCH_MESSAGES', 1000);
    const n = envInt('BENCH_SENDERS', 20);
    const perSender = Math.max(1, Math.round(messages / n));
    const profDir = process.env.BENCH_CPU_PROF;
    const countStatements = process.env.BENCH_STATEMENTS === '1';
    const localparts = ['solo', ...Array.from({ length: n }, (_, i) => `sender${i}`)];
    ctx.log(`starting the server in its own process with ${localparts.length} users`);
    const server = await startChildServer(ctx.engine, ctx.pgAdminUrl, localparts, {
      execArgv: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
      config: countStatements ? { enable_metrics: true } : {},
    });
    try {
      const rows: ResultRow[] = [];
      const idle = server.rssMiB();
      const solo = await server.login('solo');
      const users: BenchUser[] = [];
      for (const lp of localparts.slice(1)) users.push(await server.login(lp));

      // The floor every send stands on: an authenticated request that writes nothing, over the same client.
      const floor: number[] = [];
      for (let i = 0; i < 20; i++) await solo.get('/_matrix/client/v3/account/whoami');
      const f0 = performance.now();
      for (let i = 0; i < messages; i++) {
        await timed(floor, () => solo.get('/_matrix/client/v3/account/whoami'));
      }
      const fs = (performance.now() - f0) / 1000;
      rows.push({
        case: 'whoami (no write, floor)',
        messages: floor.length,
        seconds: fs,
        'msg/s': floor.length / fs,
        'p50 ms': percentile(floor, 50),
        'p99 ms': percentile(floor, 99),
        'server peak MiB': server.peakRssMiB(),
      });

      const soloRoom = await createRoom(solo);
      ctx.log(`1 sender, 1 room: ${messages} messages`);
      rows.push(
        await measure(
          '1 sender, 1 room',
          server,
          [{ user: solo, roomId: soloRoom }],
          messages,
          countStatements,
        ),
      );

      ctx.log(`${n} senders joining one room`);
      const shared = await createRoom(users[0] as BenchUser, users);
      ctx.log(`${n} senders, 1 room: ${perSender * n} messages`);
      rows.push(
        await measure(
          `${n} senders, 1 room`,
          server,
          users.map((user) => ({ user, roomId: shared })),
          perSender,
          countStatements,
        ),
      );

      ctx.log(`creating ${n} rooms`);
      const own = await Promise.all(users.map(async (user) => ({ user, roomId: await createRoom(user) })));
      ctx.log(`${n} senders, ${n} rooms: ${perSender * n} messages`);
      rows.push(await measure(`${n} senders, ${n} rooms`, server, own, perSender, countStatements));
      ctx.log(`server RSS after start ${idle.toFixed(0)} MiB`);
      return rows;
    } finally {
      await server.stop();
    }
  },
};

export default send;
