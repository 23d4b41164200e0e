/**
 * Scenario `sliding-sync-initial`: the first simplified sliding sync response (MSC4186) of a user in many busy rooms
 * (20 members, 50 messages each by default), for a list range [0,19] with timeline_limit 1 and a few required_state
 * types. The rooms are built in stages, and each stage is timed (5 runs, each a new connection), so the figures show
 * whether the first response depends on the number of rooms. Data is written in-process through the server's own
 * createRoom service, one transaction per room (as initial-sync does).
 *
 * BENCH_SLIDING_ROOMS: the room counts to time at, comma-separated (default "200,2000"); BENCH_SYNC_MEMBERS
 * (default 20), BENCH_SYNC_MESSAGES (default 50).
 */
import { performance } from 'node:perf_hooks';
import {
  countQueries,
  envInt,
  percentile,
  rssMiB,
  serverTimer,
  type BenchContext,
  type BenchUser,
  type Json,
  type ResultRow,
  type Scenario,
} from './lib.js';
import { RoomWriter, type NewEvent } from '../src/input/room-writer.js';
import type { JsonObject } from '../src/rooms/event.js';
import { createRoom, memberContent } from '../src/roomsvc/create-room.js';

export const SLIDING_PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';
const RUNS = 5;

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
  user: BenchUser,
  body: Json,
  query = '',
): Promise<{ body: Json; ms: number; bytes: number }> {
  const send = (): Promise<Response> =>
    fetch(url + SLIDING_PATH + query, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
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

const slidingSyncInitial: Scenario = {
  name: 'sliding-sync-initial',
  description: 'first sliding sync response, range [0,19], timeline 1, of a user in 200 and 2,000 rooms',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const counts = roomCounts();
    const nMembers = envInt('BENCH_SYNC_MEMBERS', 20);
    const nMessages = envInt('BENCH_SYNC_MESSAGES', 50);
    const { server } = ctx;
    const { hs } = server;
    const poolSize = Math.max(nMembers - 1, Math.min(3 * nMembers, 60));
    const hero = await server.user('hero');
    const pool = await server.users('member', poolSize);
    const writer = new PrefilledRoomWriter(hs.storage, hs.config.server_name, hs.signingKey);
    const queries = countQueries(server);
    const timer = serverTimer(server, SLIDING_PATH);
    const rows: ResultRow[] = [];
    let built = 0;
    for (const target of counts) {
      const t0 = performance.now();
      ctx.log(`building rooms ${built}..${target - 1} (${nMembers} members, ${nMessages} messages each)`);
      for (; built < target; built++) {
        const i = built;
        const others = Array.from(
          { length: nMembers - 1 },
          (_, k) => pool[(i * 3 + k) % poolSize] as BenchUser,
        );
        const members = [hero, ...others];
        writer.extra = [
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
            content: { msgtype: 'm.text', body: `message ${j} in room ${i}` },
          })),
        ];
        await createRoom(
          { storage: hs.storage, writer, serverName: hs.config.server_name },
          {
            creator: hero.userId,
            visibility: 'private',
            preset: 'public_chat',
            name: `Room ${i}`,
            topic: `Topic of room ${i}`,
            invite: [],
            isDirect: false,
            initialState: [],
            creationContent: {},
            roomVersion: hs.config.default_room_version,
          },
        );
        if ((built + 1) % 200 === 0) ctx.log(`  ${built + 1}/${target} rooms`);
      }
      ctx.log(`built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      const client: number[] = [];
      let bytes = 0;
      queries.reset();
      timer.take();
      for (let run = 0; run < RUNS; run++) {
        const r = await timedSlide(server.url, hero, { ...FIRST_PAGE, conn_id: `initial-${target}-${run}` });
        const n = Object.keys((r.body.rooms as Json | undefined) ?? {}).length;
        if (n !== Math.min(20, target)) throw new Error(`${n} rooms in the first response, expected 20`);
        client.push(r.ms);
        bytes = r.bytes;
      }
      rows.push({
        case: `range [0,19], ${target} rooms`,
        rooms: target,
        'run1 ms': client[0] as number,
        'median ms': percentile(client, 50),
        'max ms': percentile(client, 100),
        'server med ms': percentile(timer.take(), 50),
        'SQL/req': Math.round(queries.count / RUNS),
        KiB: Math.round(bytes / 1024),
        'RSS MiB': Math.round(rssMiB()),
      });
    }
    return rows;
  },
};

export default slidingSyncInitial;
