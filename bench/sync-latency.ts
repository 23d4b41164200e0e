/**
 * Scenario `sync-latency`: how fast a parked long-poll wakes. 100 receivers in 10 rooms (10 per room) each hold a
 * GET /sync?since=…&timeout=30000; a sender (a member of every room, not polling) posts a message into one room, and
 * for each of that room's receivers we take the time from the sender's 200 response to the receiver's sync
 * response having fully arrived (process.hrtime). Before every send, every receiver must have re-issued its poll
 * after its previous response and 200 ms must have passed since the last (re)issue, so all polls are parked in the
 * notifier. 50 messages by default (BENCH_WAKE_MESSAGES), spread round-robin across the rooms.
 *
 * The server runs in its own process (bench/child-server.ts): its peak RSS is reported apart from the client's.
 * BENCH_CPU_PROF=<dir> runs it with `--cpu-prof`. The sender's 200 can reach us after a receiver's response (the
 * notifier fires on commit, before the sender's reply is written); such wakes count as 0 ms and are counted.
 * Polls go through node:http with a keep-alive agent of 500 sockets (Node 20's fetch has no per-origin limit
 * either; node:http just costs the shared event loop less).
 */
import http from 'node:http';
import { startChildServer } from './federation-lib.js';
import {
  envInt,
  percentile,
  type BenchContext,
  type BenchUser,
  type Json,
  type ResultRow,
  type Scenario,
} from './lib.js';
import { sendText } from './initial-sync.js';
import { arrivalsOf, getJson, msSince, now, Parking, sawEvents, type Waiting } from './wake-lib.js';

const ROOMS = 10;
const PER_ROOM = 10;
const POLL_TIMEOUT_MS = 30_000;
const SETTLE_MS = 200;
const WARMUP = 5;

interface Receiver extends Waiting {
  user: BenchUser;
  roomId: string;
  since: string;
}

const syncLatency: Scenario = {
  name: 'sync-latency',
  description: '100 long-polling users in 10 rooms: time from a send 200 to each receiver’s /sync response',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const messages = envInt('BENCH_WAKE_MESSAGES', 50);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 500 });
    const profDir = process.env.BENCH_CPU_PROF;
    const localparts = [
      'wake_sender',
      ...Array.from({ length: ROOMS * PER_ROOM }, (_, i) => `wake_recv${i}`),
    ];
    ctx.log(`starting the server in its own process with ${localparts.length} users`);
    const server = await startChildServer(ctx.engine, ctx.pgAdminUrl, localparts, {
      execArgv: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    });
    try {
      const sender = await server.login('wake_sender');
      const users: BenchUser[] = [];
      for (const lp of localparts.slice(1)) users.push(await server.login(lp));
      const roomIds = await Promise.all(
        Array.from({ length: ROOMS }, async (_, r) => {
          const created = await sender.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
          const roomId = created.room_id as string;
          for (const u of users.slice(r * PER_ROOM, (r + 1) * PER_ROOM))
            await u.post(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, {});
          return roomId;
        }),
      );
      const receivers: Receiver[] = await Promise.all(
        users.map(async (user, i) => {
          const first = await user.get('/_matrix/client/v3/sync?timeout=0');
          return {
            user,
            roomId: roomIds[Math.floor(i / PER_ROOM)] as string,
            since: first.next_batch as string,
            parked: false,
            seen: new Map<string, bigint>(),
          };
        }),
      );

      const parking = new Parking(receivers, SETTLE_MS);
      let spurious = 0;
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
          const join = (body.rooms as Json | undefined)?.join as Record<string, Json> | undefined;
          const events = (join?.[r.roomId]?.timeline as { events: { event_id: string }[] } | undefined)
            ?.events;
          if (!events?.length) spurious++;
          sawEvents(
            r,
            (events ?? []).map((e) => e.event_id),
            arrived,
          );
        }
      };
      const loops = receivers.map((r) => pollLoop(r).catch((err: unknown) => parking.fail(err)));

      const allParked = () => parking.all();

      const fromSent: number[] = [];
      const fromSendStart: number[] = [];
      let early = 0;
      const rssBefore = server.rssMiB();
      ctx.log(`${receivers.length} polls parked; ${WARMUP} warm-up + ${messages} messages`);
      for (let m = 0; m < WARMUP + messages; m++) {
        const room = m % ROOMS;
        const targets = receivers.filter((r) => r.roomId === roomIds[room]);
        await allParked();
        if (m === WARMUP) spurious = 0;
        const tStart = now();
        const eventId = await sendText(sender, roomIds[room] as string, `wake ${m}`);
        const tSent = now();
        const got = await arrivalsOf(
          targets,
          eventId,
          `message ${m}: not every receiver woke within 10 s`,
          10_000,
        );
        if (m < WARMUP) continue;
        for (const arrived of got) {
          const d = msSince(tSent, arrived);
          if (d < 0) early++;
          fromSent.push(Math.max(0, d));
          fromSendStart.push(msSince(tStart, arrived));
        }
      }
      stopping = true;
      agent.destroy();
      await Promise.allSettled(loops);
      const row = (label: string, v: number[]): ResultRow => ({
        case: label,
        wakes: v.length,
        'p50 ms': percentile(v, 50),
        'p99 ms': percentile(v, 99),
        'max ms': percentile(v, 100),
      });
      return [
        {
          ...row('send 200 → receiver response', fromSent),
          'before 200': early,
          'spurious wakes': spurious,
          'server peak MiB': Math.round(server.peakRssMiB()),
          'server RSS before': Math.round(rssBefore),
        },
        row('send issued → receiver response', fromSendStart),
      ];
    } finally {
      await server.stop();
    }
  },
};

export default syncLatency;
