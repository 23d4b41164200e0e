/**
 * Per-connection state of simplified sliding sync (MSC4186): connections (user, device, conn_id), the positions
 * handed out on each, and what each response sent of each room (migration 0018).
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.js';

/** Starts a connection afresh: any earlier state of (user, device, conn_id) is dropped. */
export async function resetConnection(
  db: Kysely<Database>,
  userId: string,
  deviceId: string,
  connId: string,
  now: number,
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await trx
      .deleteFrom('sliding_sync_connections')
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('conn_id', '=', connId)
      .execute();
    const row = await trx
      .insertInto('sliding_sync_connections')
      .values({ user_id: userId, device_id: deviceId, conn_id: connId, created_ts: now, last_used_ts: now })
      .returning('conn_nid')
      .executeTakeFirstOrThrow();
    return Number(row.conn_nid);
  });
}

/** Drops the device's least recently used connections beyond `keep`. */
export async function trimConnections(
  db: Kysely<Database>,
  userId: string,
  deviceId: string,
  keep: number,
): Promise<void> {
  const rows = await db
    .selectFrom('sliding_sync_connections')
    .select('conn_nid')
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .orderBy('last_used_ts', 'desc')
    .orderBy('conn_nid', 'desc')
    .offset(keep)
    .limit(1000)
    .execute();
  if (rows.length === 0) return;
  await db
    .deleteFrom('sliding_sync_connections')
    .where(
      'conn_nid',
      'in',
      rows.map((r) => Number(r.conn_nid)),
    )
    .execute();
}

/** Drops connections not used since `before` (any user). */
export async function expireConnections(db: Kysely<Database>, before: number): Promise<void> {
  await db.deleteFrom('sliding_sync_connections').where('last_used_ts', '<', before).execute();
}

export interface PositionRow {
  posNid: number;
  parent: number | null;
  stream: number;
  typing: number;
  /** The `count` of each list in that response (null: not recorded, written before migration 0020). */
  listCounts: Record<string, number> | null;
}

function parseCounts(raw: string | null): Record<string, number> | null {
  if (raw === null) return null;
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
    const out: Record<string, number> = {};
    for (const [k, n] of Object.entries(v)) if (typeof n === 'number') out[k] = n;
    return out;
  } catch {
    return null;
  }
}

export interface SentRoomRow {
  roomId: string;
  membership: string;
  sentTo: number;
  timelineLimit: number;
  requiredState: string;
  lazyMembers: string;
}

/** Positions a chain may grow to before it is folded into its newest position. */
export const FOLD_AT = 8;

type PositionDbRow = {
  pos_nid: number;
  parent_pos_nid: number | null;
  stream: number;
  typing: number;
  list_counts: string | null;
};

/** The chain of `posNid` (itself first, then its parents) among the connection's positions. */
function chainOf(
  positions: readonly PositionDbRow[],
  posNid: number,
): { byNid: Map<number, PositionRow>; chain: number[] } {
  const byNid = new Map(
    positions.map((p) => [
      Number(p.pos_nid),
      {
        posNid: Number(p.pos_nid),
        parent: p.parent_pos_nid === null ? null : Number(p.parent_pos_nid),
        stream: Number(p.stream),
        typing: Number(p.typing),
        listCounts: parseCounts(p.list_counts),
      },
    ]),
  );
  const chain: number[] = [];
  for (let p: PositionRow | undefined = byNid.get(posNid); p && !chain.includes(p.posNid);) {
    chain.push(p.posNid);
    p = p.parent === null ? undefined : byNid.get(p.parent);
  }
  return { byNid, chain };
}

export interface ConnectionState {
  connNid: number;
  lastUsedTs: number;
  position: PositionRow;
  rooms: Map<string, SentRoomRow>;
}

/**
 * The state of connection (user, device, conn_id) at `posNid`: the newest row per room along the position's chain
 * of parents, with the connection, read in one statement. Only when the chain is longer than FOLD_AT, or the
 * connection has positions off the chain (answers the client never processed), is it folded (loadAndFold).
 * Undefined when there is no such connection or the position is not one of its.
 */
export async function loadState(
  db: Kysely<Database>,
  userId: string,
  deviceId: string,
  connId: string,
  posNid: number,
): Promise<ConnectionState | undefined> {
  const rows = await db
    .selectFrom('sliding_sync_connections as c')
    .innerJoin('sliding_sync_positions as p', 'p.conn_nid', 'c.conn_nid')
    .leftJoin('sliding_sync_rooms as r', 'r.pos_nid', 'p.pos_nid')
    .select(['c.conn_nid', 'c.last_used_ts'])
    .select(['p.pos_nid', 'p.parent_pos_nid', 'p.stream', 'p.typing', 'p.list_counts'])
    .select([
      'r.room_id',
      'r.membership',
      'r.sent_to',
      'r.timeline_limit',
      'r.required_state',
      'r.lazy_members',
    ])
    .where('c.user_id', '=', userId)
    .where('c.device_id', '=', deviceId)
    .where('c.conn_id', '=', connId)
    .execute();
  const head = rows[0];
  if (!head) return undefined;
  const conn = { connNid: Number(head.conn_nid), lastUsedTs: Number(head.last_used_ts) };
  const seen = new Set<number>();
  const positions: PositionDbRow[] = [];
  for (const r of rows)
    if (!seen.has(Number(r.pos_nid))) {
      seen.add(Number(r.pos_nid));
      positions.push(r);
    }
  const { byNid, chain } = chainOf(positions, posNid);
  const position = byNid.get(posNid);
  if (!position) return undefined;
  if (chain.length > FOLD_AT || byNid.size > chain.length) {
    const folded = await loadAndFold(db, conn.connNid, posNid);
    return folded && { ...conn, ...folded };
  }
  const order = new Map(chain.map((nid, i) => [nid, i]));
  const rooms = new Map<string, SentRoomRow>();
  const depth = new Map<string, number>();
  for (const r of rows) {
    if (r.room_id === null || r.membership === null) continue;
    const d = order.get(Number(r.pos_nid));
    if (d === undefined || (depth.get(r.room_id) ?? Infinity) <= d) continue;
    depth.set(r.room_id, d);
    rooms.set(r.room_id, {
      roomId: r.room_id,
      membership: r.membership,
      sentTo: Number(r.sent_to),
      timelineLimit: Number(r.timeline_limit),
      requiredState: r.required_state ?? '[]',
      lazyMembers: r.lazy_members ?? '[]',
    });
  }
  return { ...conn, position, rooms };
}

/**
 * The connection's state at `posNid` (as loadState), with the chain folded into `posNid` and every other position
 * of the connection deleted (answers the client never processed), in one transaction.
 */
export async function loadAndFold(
  db: Kysely<Database>,
  connNid: number,
  posNid: number,
): Promise<{ position: PositionRow; rooms: Map<string, SentRoomRow> } | undefined> {
  return db.transaction().execute(async (trx) => {
    const positions = await trx
      .selectFrom('sliding_sync_positions')
      .select(['pos_nid', 'parent_pos_nid', 'stream', 'typing', 'list_counts'])
      .where('conn_nid', '=', connNid)
      .execute();
    const { byNid, chain } = chainOf(positions, posNid);
    const position = byNid.get(posNid);
    if (!position) return undefined;
    const rows = await trx
      .selectFrom('sliding_sync_rooms')
      .selectAll()
      .where('pos_nid', 'in', chain)
      .orderBy('pos_nid', 'asc')
      .execute();
    const rooms = new Map<string, SentRoomRow>();
    const keep = new Map<string, number>();
    for (const r of rows) {
      rooms.set(r.room_id, {
        roomId: r.room_id,
        membership: r.membership,
        sentTo: Number(r.sent_to),
        timelineLimit: Number(r.timeline_limit),
        requiredState: r.required_state,
        lazyMembers: r.lazy_members,
      });
      keep.set(r.room_id, Number(r.pos_nid));
    }
    if (chain.length > 1) {
      // The newest row of each room stays: older rows of the same room on the chain go, then every row left on an
      // ancestor moves onto posNid (a statement per ancestor holding stale rows, and one update, whatever the
      // number of rooms).
      const stale = new Map<number, string[]>();
      for (const r of rows) {
        const from = Number(r.pos_nid);
        if (keep.get(r.room_id) === from) continue;
        const list = stale.get(from) ?? [];
        list.push(r.room_id);
        stale.set(from, list);
      }
      for (const [from, roomIds] of stale)
        for (let i = 0; i < roomIds.length; i += 500)
          await trx
            .deleteFrom('sliding_sync_rooms')
            .where('pos_nid', '=', from)
            .where('room_id', 'in', roomIds.slice(i, i + 500))
            .execute();
      await trx
        .updateTable('sliding_sync_rooms')
        .set({ pos_nid: posNid })
        .where('pos_nid', 'in', chain.slice(1))
        .execute();
      await trx
        .updateTable('sliding_sync_positions')
        .set({ parent_pos_nid: null })
        .where('pos_nid', '=', posNid)
        .execute();
    }
    const others = [...byNid.keys()].filter((n) => n !== posNid);
    if (others.length)
      await trx.deleteFrom('sliding_sync_positions').where('pos_nid', 'in', others).execute();
    return { position: { ...position, parent: null }, rooms };
  });
}

/** The highest position id stored (0: none); new ids are handed out above it (PositionSaver). */
export async function maxPositionNid(db: Kysely<Database>): Promise<number> {
  const row = await db
    .selectFrom('sliding_sync_positions')
    .select((eb) => eb.fn.max('pos_nid').as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

export interface NewPosition {
  /** The position's id, handed out before it is saved (so its answer need not wait for the commit). */
  posNid: number;
  connNid: number;
  /** The position the request continued from (null: the connection's first). */
  parent: number | null;
  at: { stream: number; typing: number };
  listCounts: Record<string, number>;
  rooms: readonly SentRoomRow[];
  now: number;
  /** Also stamp the connection as used now (callers do it when the stamp is more than a minute old). */
  touch: boolean;
}

async function writePosition(trx: Transaction<Database>, p: NewPosition): Promise<number> {
  if (p.touch)
    await trx
      .updateTable('sliding_sync_connections')
      .set({ last_used_ts: p.now })
      .where('conn_nid', '=', p.connNid)
      .execute();
  await trx
    .insertInto('sliding_sync_positions')
    .values({
      pos_nid: p.posNid,
      conn_nid: p.connNid,
      parent_pos_nid: p.parent,
      stream: p.at.stream,
      typing: p.at.typing,
      created_ts: p.now,
      list_counts: JSON.stringify(p.listCounts),
    })
    .execute();
  const posNid = p.posNid;
  for (let i = 0; i < p.rooms.length; i += 200) {
    await trx
      .insertInto('sliding_sync_rooms')
      .values(
        p.rooms.slice(i, i + 200).map((r) => ({
          pos_nid: posNid,
          room_id: r.roomId,
          membership: r.membership,
          sent_to: r.sentTo,
          timeline_limit: r.timelineLimit,
          required_state: r.requiredState,
          lazy_members: r.lazyMembers,
        })),
      )
      .execute();
  }
  return posNid;
}

/** Records a response: a new position (child of `parent`) and what it sent of each room, in one transaction. */
export function savePosition(db: Kysely<Database>, p: NewPosition): Promise<number> {
  return db.transaction().execute((trx) => writePosition(trx, p));
}

/**
 * Records the responses of several connections in one transaction (one commit, one fsync on SQLite); the position
 * ids in order. Fails as a whole when one fails (its connection was reset meanwhile): callers then save one by one.
 */
export function savePositions(db: Kysely<Database>, list: readonly NewPosition[]): Promise<number[]> {
  return db.transaction().execute(async (trx) => {
    const out: number[] = [];
    for (const p of list) out.push(await writePosition(trx, p));
    return out;
  });
}
