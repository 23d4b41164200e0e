/**
 * Scenario `incremental-sync`: the `initial-sync` user (200 rooms, 20 members, 50 messages each) after its first
 * sync; another member posts one message into one room, then the user syncs with since = the previous next_batch and
 * timeout=0. 20 rounds per case (after a warm-up), reporting the median and p90 client-side over loopback, the
 * server-side time (HTTP 'request' event → response finished) and SQL statements per sync. Also an incremental sync
 * with nothing new, the floor every long-poll wake-up pays at least twice. BENCH_SQL_TOP=<n> logs the statements of
 * each case's last sync.
 */
import {
  countQueries,
  envInt,
  percentile,
  serverTimer,
  type BenchContext,
  type BenchUser,
  type ResultRow,
  type Scenario,
} from './lib.js';
import { buildSyncDataset, joinedRooms, LAZY_FILTER, sendText, timedGet } from './initial-sync.js';

const WARMUP = 3;

const incrementalSync: Scenario = {
  name: 'incremental-sync',
  description: 'incremental /sync (timeout=0) of the initial-sync user after one new message in one room',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const rounds = envInt('BENCH_SYNC_ROUNDS', 20);
    const { server } = ctx;
    const data = await buildSyncDataset(ctx);
    const queries = countQueries(server);
    const timer = serverTimer(server, '/_matrix/client/v3/sync');
    const rows: ResultRow[] = [];
    let round = 0;

    const cases: { label: string; filter: string; message: boolean }[] = [
      { label: '1 new message, default filter', filter: '', message: true },
      { label: '1 new message, lazy members', filter: `&filter=${LAZY_FILTER}`, message: true },
      { label: 'nothing new', filter: '', message: false },
    ];
    for (const c of cases) {
      let since = (await timedGet(server, data.hero, `/_matrix/client/v3/sync?timeout=0${c.filter}`)).body
        .next_batch as string;
      const client: number[] = [];
      let sql = 0;
      for (let i = 0; i < WARMUP + rounds; i++) {
        if (i === WARMUP) {
          client.length = 0;
          timer.take();
          sql = 0;
        }
        const room = data.rooms[round++ % data.rooms.length] as (typeof data.rooms)[number];
        let eventId: string | undefined;
        if (c.message) {
          const sender = room.members[1 + (round % (room.members.length - 1))] as BenchUser;
          eventId = await sendText(sender, room.roomId, `incremental ${round}`);
        }
        queries.reset();
        const r = await timedGet(
          server,
          data.hero,
          `/_matrix/client/v3/sync?since=${encodeURIComponent(since)}&timeout=0${c.filter}`,
        );
        client.push(r.ms);
        sql += queries.count;
        if (process.env.BENCH_SQL_TOP && i === WARMUP + rounds - 1) for (const l of queries.top()) ctx.log(l);
        since = r.body.next_batch as string;
        const join = joinedRooms(r.body);
        if (c.message) {
          const events = (join[room.roomId]?.timeline as { events: { event_id: string }[] } | undefined)
            ?.events;
          if (Object.keys(join).length !== 1 || events?.length !== 1 || events[0]?.event_id !== eventId) {
            throw new Error(`${c.label}: unexpected sync body ${JSON.stringify(r.body).slice(0, 500)}`);
          }
        } else if (Object.keys(join).length !== 0) {
          throw new Error(`${c.label}: rooms in an empty incremental sync`);
        }
      }
      const serverSide = timer.take();
      ctx.log(`${c.label}: median ${percentile(client, 50).toFixed(2)} ms`);
      rows.push({
        case: c.label,
        syncs: client.length,
        'median ms': percentile(client, 50),
        'p90 ms': percentile(client, 90),
        'server med ms': percentile(serverSide, 50),
        'server p90 ms': percentile(serverSide, 90),
        'SQL/sync': Math.round(sql / client.length),
      });
    }
    return rows;
  },
};

export default incrementalSync;
