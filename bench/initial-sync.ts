/**
 * Scenario `initial-sync`: one user in many busy rooms (default 200 rooms, 20 members and 50 messages each), timing
 * a first GET /sync (no since) with the default filter and with lazy-loaded members, 3 runs each. The data is written
 * by the server's own room services (see buildSyncDataset), so it is what a real server would hold. Figures: client-side ms per run over loopback, server-side ms (request event → response finished),
 * SQL statements per sync, response size, and the process RSS (server and client share the process).
 *
 * BENCH_SYNC_ROOMS (default 200), BENCH_SYNC_MEMBERS (default 20), BENCH_SYNC_MESSAGES (default 50),
 * BENCH_SYNC_BUILD=http (build the data over HTTP, slowly), BENCH_CPU_PROF=<dir> (a CPU profile of each timed sync).
 */
import { performance } from 'node:perf_hooks';
import {
  countQueries,
  envInt,
  mapConcurrent,
  percentile,
  profiled,
  rssMiB,
  serverTimer,
  type BenchContext,
  type BenchServer,
  type BenchUser,
  type Json,
  type ResultRow,
  type Scenario,
} from './lib.js';
import type { NewEvent, RoomWriter } from '../src/input/room-writer.js';
import { createRoom, memberContent } from '../src/roomsvc/create-room.js';

/** Rooms built at once: enough to overlap the per-room write queues without flooding the event loop. */
const BUILD_CONCURRENCY = 16;

export const LAZY_FILTER = encodeURIComponent(
  JSON.stringify({ room: { state: { lazy_load_members: true } } }),
);

export interface SyncDataset {
  /** The user whose syncs are measured; a member of every room. */
  hero: BenchUser;
  rooms: { roomId: string; members: BenchUser[] }[];
}

let txnCounter = 0;

export async function sendText(user: BenchUser, roomId: string, body: string): Promise<string> {
  const rid = encodeURIComponent(roomId);
  const res = await user.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/s${++txnCounter}`, {
    msgtype: 'm.text',
    body,
  });
  if (typeof res.event_id !== 'string') throw new Error(`send returned no event_id: ${JSON.stringify(res)}`);
  return res.event_id;
}

/**
 * The server's own RoomWriter (so its commit listeners keep the caches derived from commits in step, as with any
 * write), whose createRoom also commits `extra` (joins and messages) after the room's initial state, in the same
 * transaction: the rows are the ones the HTTP path writes (an event row, a state snapshot per state event, current
 * state, memberships, side tables), minus a commit per event.
 */
function prefilledWriter(writer: RoomWriter): { writer: RoomWriter; setExtra(events: NewEvent[]): void } {
  let extra: NewEvent[] = [];
  const createRoom: RoomWriter['createRoom'] = (versionId, creator, createContent, rest) =>
    writer.createRoom(versionId, creator, createContent, (roomId) => [...rest(roomId), ...extra]);
  const wrapped = new Proxy(writer, {
    get(target, prop) {
      if (prop === 'createRoom') return createRoom;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return {
    writer: wrapped,
    setExtra: (events) => {
      extra = events;
    },
  };
}

/**
 * `hero` plus a pool of other users; each room is created by hero (public, named, with a topic), joined by
 * members-1 users of the pool (a different window of the pool per room, so rooms share some but not all members)
 * and then filled with messages from its members in turn.
 *
 * By default a room's events are written in-process through the server's own createRoom service and a RoomWriter
 * on the server's storage, one transaction per room (the HTTP path costs one fsync'd commit per event: ~150 s for
 * the default size on SQLite here). BENCH_SYNC_BUILD=http builds the same data over HTTP instead.
 */
export async function buildSyncDataset(ctx: BenchContext): Promise<SyncDataset> {
  const nRooms = envInt('BENCH_SYNC_ROOMS', 200);
  const nMembers = envInt('BENCH_SYNC_MEMBERS', 20);
  const nMessages = envInt('BENCH_SYNC_MESSAGES', 50);
  const overHttp = process.env.BENCH_SYNC_BUILD === 'http';
  const { server } = ctx;
  const { hs } = server;
  const poolSize = Math.max(nMembers - 1, Math.min(3 * nMembers, 60));
  ctx.log(`creating ${poolSize + 1} users`);
  const hero = await server.user('hero');
  const pool = await server.users('member', poolSize);
  const { writer, setExtra } = prefilledWriter(hs.writer);

  const t0 = performance.now();
  ctx.log(
    `building ${nRooms} rooms × ${nMembers} members × ${nMessages} messages ${overHttp ? 'over HTTP' : 'in-process'}`,
  );
  let built = 0;
  const rooms = await mapConcurrent(
    Array.from({ length: nRooms }, (_, i) => i),
    overHttp ? BUILD_CONCURRENCY : 1,
    async (i) => {
      const others = Array.from(
        { length: nMembers - 1 },
        (_, k) => pool[(i * 3 + k) % poolSize] as BenchUser,
      );
      const members = [hero, ...others];
      const name = `Room ${i}`;
      const topic = `Topic of room ${i}`;
      const text = (j: number): string => `message ${j} in room ${i}`;
      let roomId: string;
      if (overHttp) {
        const created = await hero.post('/_matrix/client/v3/createRoom', {
          preset: 'public_chat',
          name,
          topic,
        });
        roomId = created.room_id as string;
        const rid = encodeURIComponent(roomId);
        for (const m of others) await m.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
        for (let j = 0; j < nMessages; j++)
          await sendText(members[j % members.length] as BenchUser, roomId, text(j));
      } else {
        setExtra([
          ...(await Promise.all(
            others.map(async (m) => ({
              type: 'm.room.member',
              state_key: m.userId,
              sender: m.userId,
              content: await memberContent(hs.storage, m.userId, 'join'),
            })),
          )),
          ...Array.from({ length: nMessages }, (_, j) => ({
            type: 'm.room.message',
            sender: (members[j % members.length] as BenchUser).userId,
            content: { msgtype: 'm.text', body: text(j) },
          })),
        ]);
        roomId = await createRoom(
          { storage: hs.storage, writer, serverName: hs.config.server_name },
          {
            creator: hero.userId,
            visibility: 'private',
            preset: 'public_chat',
            name,
            topic,
            invite: [],
            isDirect: false,
            initialState: [],
            creationContent: {},
            roomVersion: hs.config.default_room_version,
          },
        );
      }
      if (++built % 50 === 0) ctx.log(`  ${built}/${nRooms} rooms`);
      return { roomId, members };
    },
  );
  ctx.log(`dataset built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // The federation fan-out follows the stream in the background: let it finish the build's events, so that its
  // statements and CPU are not in the timed syncs.
  const t1 = performance.now();
  await hs.federation.sender.idle();
  ctx.log(`federation fan-out caught up in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  return { hero, rooms };
}

/** GET `path` as `user`; returns the body, client-side ms and the response size in bytes. */
export async function timedGet(
  server: BenchServer,
  user: BenchUser,
  path: string,
): Promise<{ body: Json; ms: number; bytes: number }> {
  const t0 = performance.now();
  const res = await fetch(server.url + path, { headers: { authorization: `Bearer ${user.token}` } });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200) throw new Error(`GET ${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return { body: JSON.parse(text) as Json, ms, bytes: Buffer.byteLength(text) };
}

export function joinedRooms(body: Json): Record<string, Json> {
  return ((body.rooms as Json | undefined)?.join as Record<string, Json> | undefined) ?? {};
}

const RUNS = 3;

const initialSync: Scenario = {
  name: 'initial-sync',
  description: 'first /sync of a user in 200 rooms (20 members, 50 messages each): default and lazy members',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const { server } = ctx;
    const data = await buildSyncDataset(ctx);
    const queries = countQueries(server);
    const timer = serverTimer(server, '/_matrix/client/v3/sync');
    const rows: ResultRow[] = [];
    for (const [label, path] of [
      ['default filter', '/_matrix/client/v3/sync'],
      ['lazy_load_members', `/_matrix/client/v3/sync?filter=${LAZY_FILTER}`],
    ] as const) {
      const client: number[] = [];
      let bytes = 0;
      let stateEvents = 0;
      queries.reset();
      timer.take();
      for (let run = 0; run < RUNS; run++) {
        const r = await profiled(`initial-sync-${ctx.engine}-${label.replace(/ /g, '-')}-${run + 1}`, () =>
          timedGet(server, data.hero, path),
        );
        client.push(r.ms);
        bytes = r.bytes;
        const join = joinedRooms(r.body);
        const n = Object.keys(join).length;
        if (n !== data.rooms.length)
          throw new Error(`${label}: ${n} joined rooms, expected ${data.rooms.length}`);
        stateEvents = Object.values(join).reduce(
          (s, room) => s + ((room.state as { events: unknown[] } | undefined)?.events.length ?? 0),
          0,
        );
        ctx.log(`${label} run ${run + 1}: ${r.ms.toFixed(0)} ms, ${(r.bytes / 1024).toFixed(0)} KiB`);
      }
      const server_ = timer.take();
      for (const line of queries.top()) ctx.log(`${label} SQL (${RUNS} runs): ${line}`);
      rows.push({
        case: label,
        rooms: data.rooms.length,
        'run1 ms': client[0] as number,
        'run2 ms': client[1] as number,
        'run3 ms': client[2] as number,
        'median ms': percentile(client, 50),
        'server med ms': percentile(server_, 50),
        'SQL/sync': Math.round(queries.count / RUNS),
        'state evs': stateEvents,
        KiB: Math.round(bytes / 1024),
        'RSS MiB': Math.round(rssMiB()),
      });
    }
    return rows;
  },
};

export default initialSync;
