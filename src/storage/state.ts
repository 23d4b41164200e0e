/**
 * State snapshots: each is its parent plus its own entries, with a bounded chain (a full snapshot is written when
 * the chain would grow past MAX_CHAIN). A message points at the existing snapshot; only state events add rows.
 */
import { sql } from 'kysely';
import type { Executor } from './users.js';

export const MAX_CHAIN = 48;
const CHAIN_LIMIT = MAX_CHAIN * 2 + 2;

/** `type\0state_key` → event_nid. */
export type StateMapNids = Map<string, number>;

export const stateKey = (type: string, key: string): string => `${type}\u0000${key}`;

export function splitStateKey(k: string): [string, string] {
  const i = k.indexOf('\u0000');
  return [k.slice(0, i), k.slice(i + 1)];
}

export async function insertSnapshot(
  db: Executor,
  roomNid: number,
  parent: { nid: number; chainLen: number } | null,
  entries: ReadonlyMap<string, number>,
): Promise<{ nid: number; chainLen: number }> {
  const chainLen = parent ? parent.chainLen + 1 : 0;
  const row = await db
    .insertInto('state_snapshots')
    .values({ room_nid: roomNid, parent_nid: parent?.nid ?? null, chain_len: chainLen })
    .returning('snapshot_nid')
    .executeTakeFirstOrThrow();
  const nid = Number(row.snapshot_nid);
  const values = [...entries].map(([k, eventNid]) => {
    const [type, state_key] = splitStateKey(k);
    return { snapshot_nid: nid, type, state_key, event_nid: eventNid };
  });
  for (let i = 0; i < values.length; i += 500) {
    await db
      .insertInto('state_snapshot_entries')
      .values(values.slice(i, i + 500))
      .execute();
  }
  return { nid, chainLen };
}

export interface SnapshotChainLink {
  snapshot_nid: number;
  parent_nid: number | null;
  depth: number;
}

/** The snapshot and its ancestors, nearest first. Stops at MAX_CHAIN * 2 links to survive a cycle. */
export async function snapshotChain(db: Executor, snapshotNid: number): Promise<SnapshotChainLink[]> {
  const result = await sql<SnapshotChainLink>`
    WITH RECURSIVE chain(snapshot_nid, parent_nid, depth) AS (
      SELECT snapshot_nid, parent_nid, 0 FROM state_snapshots WHERE snapshot_nid = ${snapshotNid}
      UNION ALL
      SELECT s.snapshot_nid, s.parent_nid, chain.depth + 1
      FROM state_snapshots s JOIN chain ON s.snapshot_nid = chain.parent_nid
      WHERE chain.depth < ${CHAIN_LIMIT}
    )
    SELECT snapshot_nid, parent_nid, depth FROM chain ORDER BY depth`.execute(db);
  return result.rows.map((r) => ({
    snapshot_nid: Number(r.snapshot_nid),
    parent_nid: r.parent_nid === null ? null : Number(r.parent_nid),
    depth: Number(r.depth),
  }));
}

export interface LoadedSnapshot {
  map: StateMapNids;
  /** True when part of the chain was missing and a nearby earlier snapshot stood in for it. */
  broken: boolean;
}

/** The newest snapshot of the room older than `nid` (snapshot ids grow with history). */
async function nearestEarlierSnapshot(
  db: Executor,
  roomNid: number,
  nid: number,
): Promise<number | undefined> {
  const row = await db
    .selectFrom('state_snapshots')
    .select((eb) => eb.fn.max('snapshot_nid').as('m'))
    .where('room_nid', '=', roomNid)
    .where('snapshot_nid', '<', nid)
    .executeTakeFirst();
  return row?.m === null || row?.m === undefined ? undefined : Number(row.m);
}

/**
 * The full state map of a snapshot. When the snapshot or one of its ancestors is missing (damage) and `roomNid` is
 * known, the nearest earlier snapshot of the room stands in for the missing part, so a reader loses only the
 * missing deltas, not the whole state; `broken` tells the caller to report it. Undefined when nothing is readable.
 */
export async function loadSnapshot(
  db: Executor,
  snapshotNid: number,
  roomNid?: number,
): Promise<LoadedSnapshot | undefined> {
  const links: SnapshotChainLink[] = [];
  let broken = false;
  let next: number | null = snapshotNid;
  for (let hops = 0; next !== null && hops < 8; hops++) {
    const chain = await snapshotChain(db, next);
    const offset = links.length;
    for (const c of chain) links.push({ ...c, depth: c.depth + offset });
    const last = chain[chain.length - 1];
    if (last && last.parent_nid === null) break; // reached a full snapshot
    if (chain.length >= CHAIN_LIMIT) {
      broken = true; // a cycle or an over-long chain: use what was read
      break;
    }
    broken = true;
    const missing: number = last ? (last.parent_nid as number) : next;
    next = roomNid === undefined ? null : ((await nearestEarlierSnapshot(db, roomNid, missing)) ?? null);
  }
  if (links.length === 0) return undefined;
  const nids = links.map((c) => c.snapshot_nid);
  const rows = [];
  for (let i = 0; i < nids.length; i += 500) {
    rows.push(
      ...(await db
        .selectFrom('state_snapshot_entries')
        .select(['snapshot_nid', 'type', 'state_key', 'event_nid'])
        .where('snapshot_nid', 'in', nids.slice(i, i + 500))
        .execute()),
    );
  }
  const depthOf = new Map(links.map((c) => [c.snapshot_nid, c.depth]));
  // Apply from the root (deepest) to the snapshot itself, so nearer entries win.
  rows.sort(
    (a, b) => (depthOf.get(Number(b.snapshot_nid)) ?? 0) - (depthOf.get(Number(a.snapshot_nid)) ?? 0),
  );
  const map: StateMapNids = new Map();
  for (const r of rows) map.set(stateKey(r.type, r.state_key), Number(r.event_nid));
  return { map, broken };
}

/**
 * The full state maps of many snapshots in a few statements (one chain query per 500 snapshots, one entries query
 * per 500 links), for reading ahead. Only snapshots whose chain is whole are returned: a damaged one is left to
 * {@link loadSnapshot}, which stands in for the missing part and lets its caller report it.
 */
export async function loadSnapshots(
  db: Executor,
  snapshotNids: readonly number[],
): Promise<Map<number, StateMapNids>> {
  const out = new Map<number, StateMapNids>();
  const chains = new Map<number, SnapshotChainLink[]>();
  const unique = [...new Set(snapshotNids)];
  for (let i = 0; i < unique.length; i += 500) {
    const roots = unique.slice(i, i + 500);
    const result = await sql<SnapshotChainLink & { root: number }>`
      WITH RECURSIVE chain(root, snapshot_nid, parent_nid, depth) AS (
        SELECT snapshot_nid, snapshot_nid, parent_nid, 0 FROM state_snapshots
        WHERE snapshot_nid IN (${sql.join(roots)})
        UNION ALL
        SELECT chain.root, s.snapshot_nid, s.parent_nid, chain.depth + 1
        FROM state_snapshots s JOIN chain ON s.snapshot_nid = chain.parent_nid
        WHERE chain.depth < ${CHAIN_LIMIT}
      )
      SELECT root, snapshot_nid, parent_nid, depth FROM chain`.execute(db);
    for (const r of result.rows) {
      const root = Number(r.root);
      let links = chains.get(root);
      if (!links) chains.set(root, (links = []));
      links.push({
        snapshot_nid: Number(r.snapshot_nid),
        parent_nid: r.parent_nid === null ? null : Number(r.parent_nid),
        depth: Number(r.depth),
      });
    }
  }
  const whole = new Map<number, SnapshotChainLink[]>();
  for (const [root, links] of chains) {
    links.sort((a, b) => a.depth - b.depth);
    const last = links[links.length - 1];
    if (last && last.parent_nid === null && links.length < CHAIN_LIMIT) whole.set(root, links);
  }
  const linkNids = [...new Set([...whole.values()].flatMap((links) => links.map((l) => l.snapshot_nid)))];
  const entries = new Map<number, { type: string; state_key: string; event_nid: number }[]>();
  for (let i = 0; i < linkNids.length; i += 500) {
    const rows = await db
      .selectFrom('state_snapshot_entries')
      .select(['snapshot_nid', 'type', 'state_key', 'event_nid'])
      .where('snapshot_nid', 'in', linkNids.slice(i, i + 500))
      .execute();
    for (const r of rows) {
      const nid = Number(r.snapshot_nid);
      let list = entries.get(nid);
      if (!list) entries.set(nid, (list = []));
      list.push({ type: r.type, state_key: r.state_key, event_nid: Number(r.event_nid) });
    }
  }
  for (const [root, links] of whole) {
    const map: StateMapNids = new Map();
    // From the full snapshot (deepest) to the snapshot itself, so nearer entries win.
    for (let d = links.length - 1; d >= 0; d--)
      for (const e of entries.get((links[d] as SnapshotChainLink).snapshot_nid) ?? [])
        map.set(stateKey(e.type, e.state_key), e.event_nid);
    out.set(root, map);
  }
  return out;
}
