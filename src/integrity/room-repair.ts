/**
 * Repairs one room from its analysis, in one transaction: damaged events are quarantined, then everything derived
 * from the event graph is rebuilt from the replay (state snapshots, current state, membership, forward
 * extremities, edge rows), edges to unknown events are recorded as missing, and the room's damage reports are
 * marked resolved. The rebuilt rows are exactly what the writer would have written, so a second run finds nothing.
 */
import type { Transaction } from 'kysely';
import type { Engine } from '../storage/dialect.js';
import { quarantineEvent, recordMissingEvents } from '../storage/quarantine.js';
import type { Database } from '../storage/schema.js';
import { insertSnapshot, MAX_CHAIN, splitStateKey, stateKey, type StateMapNids } from '../storage/state.js';
import { authIds, prevIds, type GoodEvent, type RoomAnalysis } from './room-check.js';

const DERIVED: ReadonlySet<string> = new Set([
  'stream_ordering_missing',
  'stream_ordering_duplicate',
  'snapshot_missing',
  'snapshot_chain_broken',
  'snapshot_chain_cycle',
  'snapshot_chain_too_long',
  'snapshot_entry_dangling',
  'state_mismatch',
  'forward_extremities_mismatch',
  'current_snapshot_mismatch',
  'current_state_mismatch',
  'room_members_mismatch',
]);

export interface RoomRepairResult {
  quarantined: number;
  rebuilt: boolean;
}

async function chunked<T>(items: readonly T[], fn: (chunk: T[]) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += 500) await fn(items.slice(i, i + 500));
}

export async function repairRoom(
  trx: Transaction<Database>,
  engine: Engine,
  a: RoomAnalysis,
  /** event_nids that need a new stream ordering (missing or duplicated), and where to get one. */
  restream: { nids: ReadonlySet<number>; allocate: () => number },
): Promise<RoomRepairResult> {
  const { room } = a;
  for (const b of a.bad) await quarantineEvent(trx, engine, b.row, room.id, `${b.kind}: ${b.reason}`);

  const rebuild = a.bad.length > 0 || a.problems.some((p) => DERIVED.has(p.kind));
  const inRoomRestream = a.good.filter((g) => restream.nids.has(g.nid));
  for (const g of inRoomRestream) {
    const pos = (await freeSlot(trx, a.good, g, restream.nids)) ?? restream.allocate();
    await trx.updateTable('events').set({ stream_ordering: pos }).where('event_nid', '=', g.nid).execute();
    g.row = { ...g.row, stream_ordering: pos };
  }
  if (rebuild) await rebuildDerived(trx, a);

  for (const g of a.edgeRowsToRewrite) await rewriteEdges(trx, g);
  if (a.missingEdges.length) await recordMissingEvents(trx, room.nid, a.missingEdges);
  await trx
    .updateTable('damage_reports')
    .set({ resolved_ts: Date.now() })
    .where('room_id', '=', room.id)
    .where('resolved_ts', 'is', null)
    .execute();
  return { quarantined: a.bad.length, rebuilt: rebuild };
}

/**
 * A stream position between the event's neighbours in graph order that no event uses (usually the very slot the
 * event had), so that it keeps its place in the timeline; undefined when there is none.
 */
async function freeSlot(
  trx: Transaction<Database>,
  good: readonly GoodEvent[],
  g: GoodEvent,
  restream: ReadonlySet<number>,
): Promise<number | undefined> {
  const i = good.indexOf(g);
  const usable = (e: GoodEvent | undefined) =>
    e !== undefined && !e.row.outlier && e.row.stream_ordering !== null && !restream.has(e.nid);
  let lo: number | undefined;
  for (let j = i - 1; j >= 0 && lo === undefined; j--)
    if (usable(good[j])) lo = Number(good[j]?.row.stream_ordering);
  let hi: number | undefined;
  for (let j = i + 1; j < good.length && hi === undefined; j++)
    if (usable(good[j])) hi = Number(good[j]?.row.stream_ordering);
  if (lo === undefined || hi === undefined) return undefined;
  for (let pos = lo + 1; pos < hi && pos < lo + 100; pos++) {
    const taken = await trx
      .selectFrom('events')
      .select('event_nid')
      .where('stream_ordering', '=', pos)
      .executeTakeFirst();
    if (!taken) return pos;
  }
  return undefined;
}

async function rewriteEdges(trx: Transaction<Database>, g: GoodEvent): Promise<void> {
  await trx.deleteFrom('event_edges').where('event_nid', '=', g.nid).execute();
  await trx.deleteFrom('event_auth_edges').where('event_nid', '=', g.nid).execute();
  const prev = [...new Set(prevIds(g.pdu))].map((prev_event_id) => ({ event_nid: g.nid, prev_event_id }));
  if (prev.length) await trx.insertInto('event_edges').values(prev).execute();
  const auth = [...new Set(authIds(g.pdu))].map((auth_event_id) => ({ event_nid: g.nid, auth_event_id }));
  if (auth.length) await trx.insertInto('event_auth_edges').values(auth).execute();
}

/** Replays the room: new snapshots (full root, deltas, a full one every MAX_CHAIN), then the read models. */
async function rebuildDerived(trx: Transaction<Database>, a: RoomAnalysis): Promise<void> {
  const roomNid = a.room.nid;
  const state: StateMapNids = new Map();
  let snap = await insertSnapshot(trx, roomNid, null, new Map());
  const firstNew = snap.nid;
  const pointAt = new Map<number, number[]>();
  for (const g of a.good) {
    if (g.row.outlier) continue;
    const list = pointAt.get(snap.nid);
    if (list) list.push(g.nid);
    else pointAt.set(snap.nid, [g.nid]);
    if (typeof g.pdu.state_key !== 'string') continue;
    const key = stateKey(g.pdu.type, g.pdu.state_key);
    state.set(key, g.nid);
    snap =
      snap.chainLen + 1 > MAX_CHAIN
        ? await insertSnapshot(trx, roomNid, null, state)
        : await insertSnapshot(trx, roomNid, snap, new Map([[key, g.nid]]));
  }
  for (const [snapNid, nids] of pointAt) {
    await chunked(nids, (c) =>
      trx.updateTable('events').set({ state_snapshot_nid: snapNid }).where('event_nid', 'in', c).execute(),
    );
  }
  await trx
    .updateTable('rooms')
    .set({ current_snapshot_nid: snap.nid })
    .where('room_nid', '=', roomNid)
    .execute();
  // Old snapshots of the room are derived data that nothing points at any more.
  await trx
    .updateTable('events')
    .set({ state_snapshot_nid: null })
    .where('room_nid', '=', roomNid)
    .where('outlier', '=', 1)
    .where('state_snapshot_nid', '<', firstNew)
    .execute();
  await trx
    .updateTable('state_snapshots')
    .set({ parent_nid: null })
    .where('room_nid', '=', roomNid)
    .where('snapshot_nid', '<', firstNew)
    .execute();
  await trx
    .deleteFrom('state_snapshot_entries')
    .where('snapshot_nid', 'in', (eb) =>
      eb
        .selectFrom('state_snapshots')
        .select('snapshot_nid')
        .where('room_nid', '=', roomNid)
        .where('snapshot_nid', '<', firstNew),
    )
    .execute();
  await trx
    .deleteFrom('state_snapshots')
    .where('room_nid', '=', roomNid)
    .where('snapshot_nid', '<', firstNew)
    .execute();

  await trx.deleteFrom('current_state').where('room_nid', '=', roomNid).execute();
  const cs = [...state].map(([k, event_nid]) => {
    const [type, state_key] = splitStateKey(k);
    return { room_nid: roomNid, type, state_key, event_nid };
  });
  await chunked(cs, (c) => trx.insertInto('current_state').values(c).execute());

  const forgotten = new Map(
    (
      await trx
        .selectFrom('room_members')
        .select(['user_id', 'event_nid', 'forgotten'])
        .where('room_nid', '=', roomNid)
        .execute()
    ).map((m) => [`${m.user_id}|${Number(m.event_nid)}`, Number(m.forgotten)]),
  );
  await trx.deleteFrom('room_members').where('room_nid', '=', roomNid).execute();
  const byNid = new Map(a.good.map((g) => [g.nid, g]));
  const members = [];
  for (const nid of state.values()) {
    const g = byNid.get(nid);
    if (!g || g.pdu.type !== 'm.room.member' || typeof g.pdu.state_key !== 'string') continue;
    const membership = typeof g.pdu.content.membership === 'string' ? g.pdu.content.membership : 'leave';
    members.push({
      room_nid: roomNid,
      user_id: g.pdu.state_key,
      membership,
      event_nid: nid,
      stream_ordering: Number(g.row.stream_ordering),
      forgotten: forgotten.get(`${g.pdu.state_key}|${nid}`) ?? 0,
    });
  }
  await chunked(members, (c) => trx.insertInto('room_members').values(c).execute());

  await trx.deleteFrom('forward_extremities').where('room_nid', '=', roomNid).execute();
  const fwd = a.extremities.map((event_nid) => ({ room_nid: roomNid, event_nid }));
  await chunked(fwd, (c) => trx.insertInto('forward_extremities').values(c).execute());
}
