/**
 * Scenario `sliding-sync-wake`: how fast a parked simplified sliding sync long-poll wakes. 100 connections (100
 * users, 10 per room in 10 rooms, each room in the user's list range [0,19]) each hold a POST …/sync?pos=…&
 * timeout=30000; a sender (a member of every room, not polling) posts a message into one room, and for each of that
 * room's receivers we take the time from the sender's 200 response to the receiver's response (carrying the event
 * in its room's timeline) having fully arrived. Before every send all polls must be parked (re-issued after their
 * previous response, none (re)issued in the last 200 ms). 50 messages by default (BENCH_WAKE_MESSAGES), round-robin
 * over the rooms. The server runs in its own process (bench/child-server.ts), so the clients' work is not in its
 * figures and its RSS is its own; a response that beats the sender's 200 counts as 0 ms and is counted.
 * BENCH_STATEMENTS=1 turns the server's metrics on and reports the SQL statements per message (the send, the
 * woken responses and the polls re-issued after them); BENCH_CPU_PROF=<dir> profiles the server.
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
import { SLIDING_PATH, statementDelta, statements } from './sliding-sync-initial.js';
import { arrivalsOf, msSince, now, Parking, sawEvents, type Waiting } from './wake-lib.js';

const ROOMS = 10;
const PER_ROOM = 10;
const POLL_TIMEOUT_MS = 30_000;
const SETTLE_MS = 200;
const WARMUP = 5;
const LIST = {
  lists: { all: { ranges: [[0, 19]], timeline_limit: 1, required_state: [['m.room.name', '']] } },
};

function postJson(
  agent: http.Agent,
  url: string,
  token: string,
  body: Json,
): Promise<{ body: Json; arrived: bigint }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const arrived = now();
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200)
            reject(new Error(`POST ${url}: HTTP ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve({ body: JSON.parse(text) as Json, arrived });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

interface Receiver extends Waiting {
  user: BenchUser;
  roomId: string;
  pos: string;
}

const slidingSyncWake: Scenario = {
  name: 'sliding-sync-wake',
  description: '100 sliding sync long-polls in 10 rooms: time from a send 200 to each receiver’s response',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const messages = envInt('BENCH_WAKE_MESSAGES', 50);
    const profDir = process.env.BENCH_CPU_PROF;
    const countStatements = process.env.BENCH_STATEMENTS === '1';
    const agent = new http.Agent({ keepAlive: true, maxSockets: 500 });
    const recvNames = Array.from({ length: ROOMS * PER_ROOM }, (_, i) => `wake_recv${i}`);
    ctx.log(`starting the server in its own process with ${recvNames.length + 1} users`);
    const server = await startChildServer(ctx.engine, ctx.pgAdminUrl, ['wake_sender', ...recvNames], {
      execArgv: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
      config: countStatements ? { enable_metrics: true } : {},
    });
    try {
      return await measure(server, agent, messages, countStatements, ctx);
    } finally {
      agent.destroy();
      await server.stop();
    }
  },
};

async function measure(
  server: Awaited<ReturnType<typeof startChildServer>>,
  agent: http.Agent,
  messages: number,
  countStatements: boolean,
  ctx: BenchContext,
): Promise<ResultRow[]> {
  const sender = await server.login('wake_sender');
  const users: BenchUser[] = [];
  for (let i = 0; i < ROOMS * PER_ROOM; i++) users.push(await server.login(`wake_recv${i}`));
  ctx.log(`creating ${ROOMS} rooms`);
  const roomIds = await Promise.all(
    Array.from({ length: ROOMS }, async (_, r) => {
      const created = await sender.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const roomId = created.room_id as string;
      for (const m of users.slice(r * PER_ROOM, (r + 1) * PER_ROOM))
        await m.post(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, {});
      return roomId;
    }),
  );
  const url = (pos?: string): string =>
    server.url +
    SLIDING_PATH +
    (pos === undefined ? '' : `?pos=${encodeURIComponent(pos)}&timeout=${POLL_TIMEOUT_MS}`);
  const receivers: Receiver[] = await Promise.all(
    users.map(async (user, i) => {
      const first = await postJson(agent, url(), user.token as string, LIST);
      return {
        user,
        roomId: roomIds[Math.floor(i / PER_ROOM)] as string,
        pos: first.body.pos as string,
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
      const pending = postJson(agent, url(r.pos), r.user.token as string, LIST);
      r.parked = true;
      parking.issued();
      const { body, arrived } = await pending;
      r.parked = false;
      r.pos = body.pos as string;
      if (stopping) return;
      const room = (body.rooms as Record<string, Json> | undefined)?.[r.roomId];
      const events = (room?.timeline as { event_id: string }[] | undefined) ?? [];
      if (events.length === 0) spurious++;
      sawEvents(
        r,
        events.map((e) => e.event_id),
        arrived,
      );
    }
  };
  const loops = receivers.map((r) => pollLoop(r).catch((err: unknown) => parking.fail(err)));
  const allParked = () => parking.all();

  const fromSent: number[] = [];
  let early = 0;
  let before: Map<string, number> | undefined;
  ctx.log(`${receivers.length} polls parked; ${WARMUP} warm-up + ${messages} messages`);
  for (let m = 0; m < WARMUP + messages; m++) {
    const room = m % ROOMS;
    const targets = receivers.filter((r) => r.roomId === roomIds[room]);
    await allParked();
    if (m === WARMUP) {
      spurious = 0;
      if (countStatements) before = await statements(server.url);
    }
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
    }
  }
  await allParked();
  const stmts = before ? statementDelta(before, await statements(server.url), messages) : undefined;
  if (stmts) ctx.log(`statements per message (send + ${PER_ROOM} wakes + re-issued polls): ${stmts.detail}`);
  stopping = true;
  agent.destroy();
  await Promise.allSettled(loops);
  const row: ResultRow = {
    case: 'send 200 → sliding sync response',
    connections: receivers.length,
    wakes: fromSent.length,
    'p50 ms': percentile(fromSent, 50),
    'p99 ms': percentile(fromSent, 99),
    'max ms': percentile(fromSent, 100),
    'before 200': early,
    'spurious wakes': spurious,
    'server RSS MiB': Math.round(server.rssMiB()),
    'server peak MiB': Math.round(server.peakRssMiB()),
  };
  if (stmts) row['SQL/msg'] = Math.round(stmts.total);
  return [row];
}

export default slidingSyncWake;
