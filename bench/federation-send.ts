/**
 * Scenario `federation-send`: messages from a client on server A (this process) into a room shared with server B
 * (its own process), measured until they are visible in the /sync of B's user. B's user long-polls /sync filtered to
 * the room; A's user sends BENCH_FED_MESSAGES messages (default 300) one after another, each awaited. Latency is
 * from the start of a message's PUT on A to the arrival of the /sync response on B that carries it; throughput is
 * the messages divided by the time from the first PUT to the last arrival. B's peak RSS is read from /proc.
 */
import { performance } from 'node:perf_hooks';
import { startChildServer } from './federation-lib.js';
import {
  envInt,
  percentile,
  type BenchContext,
  type BenchUser,
  type ResultRow,
  type Scenario,
} from './lib.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Follows B's /sync for one room and records when each message body first arrives. */
function follow(user: BenchUser, roomId: string, since: string): { seen: Map<string, number>; stop(): void } {
  const seen = new Map<string, number>();
  let stopped = false;
  const filter = encodeURIComponent(
    JSON.stringify({
      room: { rooms: [roomId], timeline: { limit: 100 }, state: { lazy_load_members: true } },
    }),
  );
  void (async () => {
    let token = since;
    while (!stopped) {
      const res = await user.get(`/_matrix/client/v3/sync?since=${token}&timeout=30000&filter=${filter}`);
      const at = performance.now();
      token = res.next_batch as string;
      const join = (res.rooms as { join?: Record<string, { timeline?: { events?: unknown[] } }> } | undefined)
        ?.join?.[roomId];
      for (const ev of join?.timeline?.events ?? []) {
        const body = (ev as { content?: { body?: unknown } }).content?.body;
        if (typeof body === 'string' && !seen.has(body)) seen.set(body, at);
      }
    }
  })().catch((err: unknown) => {
    if (!stopped) console.error(`B's sync loop failed: ${(err as Error).message}`);
  });
  return {
    seen,
    stop: () => {
      stopped = true;
    },
  };
}

async function waitFor(what: string, check: () => boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const scenario: Scenario = {
  name: 'federation-send',
  description:
    'messages from a client on A visible in /sync on B (B in its own process): msg/s, p50/p99 latency',
  federation: true,
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const messages = envInt('BENCH_FED_MESSAGES', 300);
    const a = ctx.server;
    const alice = await a.user('alice');
    ctx.log('starting server B in its own process');
    const b = await startChildServer(ctx.engine, ctx.pgAdminUrl, ['bob']);
    try {
      const bob = await b.login('bob');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const roomId = created.room_id as string;
      const rid = encodeURIComponent(roomId);
      ctx.log('B joins the room over federation');
      await bob.post(
        `/_matrix/client/v3/join/${rid}?server_name=${encodeURIComponent(a.hs.config.server_name)}`,
      );
      const initial = await bob.get('/_matrix/client/v3/sync?timeout=0');
      const follower = follow(bob, roomId, initial.next_batch as string);
      try {
        const send = (body: string): Promise<unknown> =>
          alice.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/${body}`, {
            msgtype: 'm.text',
            body,
          });
        for (let i = 0; i < 5; i++) await send(`warmup${i}`);
        await waitFor('the warm-up messages on B', () => follower.seen.has('warmup4'));
        ctx.log(`${messages} messages from A`);
        const started = new Map<string, number>();
        const t0 = performance.now();
        for (let i = 0; i < messages; i++) {
          const body = `m${i}`;
          started.set(body, performance.now());
          await send(body);
        }
        const sentIn = performance.now() - t0;
        await waitFor(
          'every message on B',
          () => follower.seen.has(`m${messages - 1}`) && follower.seen.size >= messages + 5,
        );
        const latencies = [...started].map(([body, at]) => (follower.seen.get(body) ?? Number.NaN) - at);
        const last = Math.max(...[...started.keys()].map((body) => follower.seen.get(body) ?? 0));
        const seconds = (last - t0) / 1000;
        return [
          {
            case: '1 sender on A, 1 reader on B',
            messages,
            'send s': sentIn / 1000,
            'visible s': seconds,
            'msg/s': messages / seconds,
            'p50 ms': percentile(latencies, 50),
            'p99 ms': percentile(latencies, 99),
            'B peak RSS MiB': b.peakRssMiB(),
          },
        ];
      } finally {
        follower.stop();
      }
    } finally {
      await b.stop();
    }
  },
};

export default scenario;
