/**
 * State snapshots: each is its parent plus its own entries, with a bounded chain (a full snapshot is written when
 * the chain would grow past MAX_CHAIN). A message points at the existing snapshot; only state events add rows.
 */
import { sql } from 'kysely';
import type { Executor } from './users.js';

export const MAX_CHAIN = 48;

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
  const limit = MAX_CHAIN * 2 + 2;
  const result = await sql<SnapshotChainLink>`
    WITH RECURSIVE chain(snapshot_nid, parent_nid, depth) AS (
      SELECT snapshot_nid, parent_nid, 0 FROM state_snapshots WHERE snapshot_nid = ${snapshotNid}
      UNION ALL
      SELECT s.snapshot_nid, s.parent_nid, chain.depth + 1
      FROM state_snapshots s JOIN chain ON s.snapshot_nid = chain.parent_nid
      WHERE chain.depth < ${limit}
    )
    SELECT snapshot_nid, parent_nid, depth FROM chain ORDER BY depth`.execute(db);
  return result.rows.map((r) => ({
    snapshot_nid: Number(r.snapshot_nid),
    parent_nid: r.parent_nid === null ? null : Number(r.parent_nid),
    depth: Number(r.depth),
  }));
}

/**
 * The full state map of a snapshot. Returns undefined when the snapshot or one of its ancestors is missing
 * (damage): callers report it and serve what they can.
 */
export async function loadSnapshot(db: Executor, snapshotNid: number): Promise<StateMapNids | undefined> {
  const chain = await snapshotChain(db, snapshotNid);
  if (chain.length === 0) return undefined;
  const last = chain[chain.length - 1];
  if (last && last.parent_nid !== null) return undefined; // broken or over-long chain
  const nids = chain.map((c) => c.snapshot_nid);
  const rows = await db
    .selectFrom('state_snapshot_entries')
    .select(['snapshot_nid', 'type', 'state_key', 'event_nid'])
    .where('snapshot_nid', 'in', nids)
    .execute();
  const depthOf = new Map(chain.map((c) => [c.snapshot_nid, c.depth]));
  // Apply from the root (deepest) to the snapshot itself, so nearer entries win.
  rows.sort(
    (a, b) => (depthOf.get(Number(b.snapshot_nid)) ?? 0) - (depthOf.get(Number(a.snapshot_nid)) ?? 0),
  );
  const out: StateMapNids = new Map();
  for (const r of rows) out.set(stateKey(r.type, r.state_key), Number(r.event_nid));
  return out;
}
