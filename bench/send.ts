/**
 * Scenario `send`: messages per second through PUT /rooms/{roomId}/send over real HTTP, in three shapes:
 * one sender in one room (sequential requests), 20 concurrent senders in one room (the room's write queue is the
 * bottleneck) and 20 senders in 20 rooms (writes to different rooms run in parallel). BENCH_MESSAGES (default
 * 1000) is the number of messages per case; BENCH_SENDERS (default 20) the number of concurrent senders.
 */
import { performance } from 'node:perf_hooks';
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

/** Each sender sends `perSender` messages one after another into its room; all senders run at once. */
async function measure(
  label: string,
  senders: readonly { user: BenchUser; roomId: string }[],
  perSender: number,
): Promise<ResultRow> {
  // Warm-up (not measured): JIT, connection set-up, room heads cached.
  await Promise.all(
    senders.map(async (s) => {
      for (let i = 0; i < WARMUP_PER_SENDER; i++) await sendOne(s.user, s.roomId, `warm-up ${i}`);
    }),
  );
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
  return {
    case: label,
    messages: latencies.length,
    seconds,
    'msg/s': latencies.length / seconds,
    'p50 ms': percentile(latencies, 50),
    'p99 ms': percentile(latencies, 99),
  };
}

const send: Scenario = {
  name: 'send',
  description: 'PUT /send throughput: 1 sender/1 room, N senders/1 room, N senders/N rooms',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const messages = envInt('BENCH_MESSAGES', 1000);
    const n = envInt('BENCH_SENDERS', 20);
    const perSender = Math.max(1, Math.round(messages / n));
    const { server } = ctx;
    const rows: ResultRow[] = [];

    ctx.log(`creating ${n + 1} users`);
    const solo = await server.user('solo');
    const users = await server.users('sender', n);

    const soloRoom = await server.room(solo);
    ctx.log(`1 sender, 1 room: ${messages} messages`);
    rows.push(await measure('1 sender, 1 room', [{ user: solo, roomId: soloRoom }], messages));

    ctx.log(`${n} senders joining one room`);
    const shared = await server.room(users[0] as BenchUser, users);
    ctx.log(`${n} senders, 1 room: ${perSender * n} messages`);
    rows.push(
      await measure(
        `${n} senders, 1 room`,
        users.map((user) => ({ user, roomId: shared })),
        perSender,
      ),
    );

    ctx.log(`creating ${n} rooms`);
    const own = await Promise.all(users.map(async (user) => ({ user, roomId: await server.room(user) })));
    ctx.log(`${n} senders, ${n} rooms: ${perSender * n} messages`);
    rows.push(await measure(`${n} senders, ${n} rooms`, own, perSender));
    return rows;
  },
};

export default send;
