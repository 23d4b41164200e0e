/**
 * SQL of simplified sliding sync (MSC4186): the user's rooms with their bump stamps in one query, the bulk facts
 * list filters need, and the per-connection state (connections, positions, what each response sent of each room).
 */
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';
import type { Executor } from './users.js';

/** Event types that bump a room to the top of the list (the proposal's "proper" activity). */
export const BUMP_EVENT_TYPES = [
  'm.room.create',
  'm.room.message',
  'm.room.encrypted',
  'm.sticker',
  'm.call.invite',
  'm.poll.start',
  'm.beacon_info',
] as const;

export interface UserRoomRow {
  roomNid: number;
  roomId: string;
  membership: string;
  eventNid: number;
  /** Stream position of the user's membership event. */
  membershipStream: number;
  /** Sender of the user's membership event (a kick or ban has another sender). */
  membershipSender: string | null;
  forgotten: boolean;
  /** Stream position of the room's latest bump event (null when there is none, e.g. a remote invite). */
  bump: number | null;
  /** Stream position of the room's latest event (null when none). */
  last: number | null;
}

/** Every room the user has a membership row in, with bump stamp and latest position: one query. */
export async function userRooms(db: Kysely<Database>, userId: string): Promise<UserRoomRow[]> {
  const rows = await db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .leftJoin('events as me', 'me.event_nid', 'm.event_nid')
    .select(['m.room_nid', 'r.room_id', 'm.membership', 'm.event_nid', 'm.stream_ordering', 'm.forgotten'])
    .select('me.sender')
    .select((eb) =>
      eb
        .selectFrom('events as e')
        .select('e.stream_ordering')
        .whereRef('e.room_nid', '=', 'm.room_nid')
        .where('e.outlier', '=', 0)
        .where('e.stream_ordering', 'is not', null)
        .where('e.rejected_reason', 'is', null)
        .where('e.soft_failed', '=', 0)
        .where('e.type', 'in', [...BUMP_EVENT_TYPES])
        .orderBy('e.stream_ordering', 'desc')
        .limit(1)
        .as('bump'),
    )
    .select((eb) =>
      eb
        .selectFrom('events as e2')
        .select('e2.stream_ordering')
        .whereRef('e2.room_nid', '=', 'm.room_nid')
        .where('e2.outlier', '=', 0)
        .where('e2.stream_ordering', 'is not', null)
        .orderBy('e2.stream_ordering', 'desc')
        .limit(1)
        .as('last'),
    )
    .where('m.user_id', '=', userId)
    .execute();
  return rows.map((r) => ({
    roomNid: Number(r.room_nid),
    roomId: r.room_id,
    membership: r.membership,
    eventNid: Number(r.event_nid),
    membershipStream: Number(r.stream_ordering),
    membershipSender: r.sender ?? null,
    forgotten: Number(r.forgotten) !== 0,
    bump: r.bump === null || r.bump === undefined ? null : Number(r.bump),
    last: r.last === null || r.last === undefined ? null : Number(r.last),
  }));
}

/** The rooms the user is joined to, invited to or knocking on (what a long-poll watches). */
export async function activeRoomIds(db: Kysely<Database>, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .select('r.room_id')
    .where('m.user_id', '=', userId)
    .where('m.membership', 'in', ['join', 'invite', 'knock'])
    .execute();
  return rows.map((r) => r.room_id);
}

const CHUNK = 500;

/** Current-state rows of the given type in the given rooms: room_nid → (state_key → event_nid). */
export async function currentStateOfType(
  db: Kysely<Database>,
  roomNids: readonly number[],
  type: string,
): Promise<Map<number, Map<string, number>>> {
  const out = new Map<number, Map<string, number>>();
  for (let i = 0; i < roomNids.length; i += CHUNK) {
    const rows = await db
      .selectFrom('current_state')
      .select(['room_nid', 'state_key', 'event_nid'])
      .where('room_nid', 'in', roomNids.slice(i, i + CHUNK))
      .where('type', '=', type)
      .execute();
    for (const r of rows) {
      const nid = Number(r.room_nid);
      let m = out.get(nid);
      if (!m) out.set(nid, (m = new Map()));
      m.set(r.state_key, Number(r.event_nid));
    }
  }
  return out;
}

/** The user's room account data of one type (e.g. m.tag): room_id → raw JSON content. */
export async function roomAccountDataOfType(
  db: Kysely<Database>,
  userId: string,
  type: string,
): Promise<Map<string, string>> {
  const rows = await db
    .selectFrom('account_data')
    .select(['room_id', 'content'])
    .where('user_id', '=', userId)
    .where('type', '=', type)
    .where('room_id', '!=', '')
    .execute();
  return new Map(rows.map((r) => [r.room_id, r.content]));
}

// ---- connections ----

export interface ConnectionRow {
  connNid: number;
  lastUsedTs: number;
}

export async function findConnection(
  db: Executor,
  userId: string,
  deviceId: string,
  connId: string,
): Promise<ConnectionRow | undefined> {
  const row = await db
    .selectFrom('sliding_sync_connections')
    .select(['conn_nid', 'last_used_ts'])
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .where('conn_id', '=', connId)
    .executeTakeFirst();
  return row ? { connNid: Number(row.conn_nid), lastUsedTs: Number(row.last_used_ts) } : undefined;
}

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
}

export interface SentRoomRow {
  roomId: string;
  membership: string;
  sentTo: number;
  timelineLimit: number;
  requiredState: string;
  lazyMembers: string;
}

/**
 * The connection's state at `posNid`: the newest row per room along the position's chain of parents. Folds that
 * chain into `posNid` and deletes every other position of the connection (answers the client never processed).
 * Undefined when the position is not one of this connection's.
 */
export async function loadAndFold(
  db: Kysely<Database>,
  connNid: number,
  posNid: number,
  now: number,
): Promise<{ position: PositionRow; rooms: Map<string, SentRoomRow> } | undefined> {
  return db.transaction().execute(async (trx) => {
    const positions = await trx
      .selectFrom('sliding_sync_positions')
      .select(['pos_nid', 'parent_pos_nid', 'stream', 'typing'])
      .where('conn_nid', '=', connNid)
      .execute();
    const byNid = new Map(
      positions.map((p) => [
        Number(p.pos_nid),
        {
          posNid: Number(p.pos_nid),
          parent: p.parent_pos_nid === null ? null : Number(p.parent_pos_nid),
          stream: Number(p.stream),
          typing: Number(p.typing),
        },
      ]),
    );
    const position = byNid.get(posNid);
    if (!position) return undefined;
    const chain: number[] = [];
    for (let p: PositionRow | undefined = position; p && !chain.includes(p.posNid);) {
      chain.push(p.posNid);
      p = p.parent === null ? undefined : byNid.get(p.parent);
    }
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
      // Move the newest row of each room onto posNid, then drop the ancestors (their other rows go with them).
      for (const [roomId, from] of keep) {
        if (from === posNid) continue;
        await trx
          .deleteFrom('sliding_sync_rooms')
          .where('pos_nid', '=', posNid)
          .where('room_id', '=', roomId)
          .execute();
        await trx
          .updateTable('sliding_sync_rooms')
          .set({ pos_nid: posNid })
          .where('pos_nid', '=', from)
          .where('room_id', '=', roomId)
          .execute();
      }
      await trx
        .updateTable('sliding_sync_positions')
        .set({ parent_pos_nid: null })
        .where('pos_nid', '=', posNid)
        .execute();
    }
    const others = [...byNid.keys()].filter((n) => n !== posNid);
    if (others.length)
      await trx.deleteFrom('sliding_sync_positions').where('pos_nid', 'in', others).execute();
    await trx
      .updateTable('sliding_sync_connections')
      .set({ last_used_ts: now })
      .where('conn_nid', '=', connNid)
      .execute();
    return { position: { ...position, parent: null }, rooms };
  });
}

/** Records a response: a new position (child of `parent`) and what it sent of each room. */
export async function savePosition(
  db: Kysely<Database>,
  connNid: number,
  parent: number | null,
  at: { stream: number; typing: number },
  rooms: readonly SentRoomRow[],
  now: number,
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .insertInto('sliding_sync_positions')
      .values({
        conn_nid: connNid,
        parent_pos_nid: parent,
        stream: at.stream,
        typing: at.typing,
        created_ts: now,
      })
      .returning('pos_nid')
      .executeTakeFirstOrThrow();
    const posNid = Number(row.pos_nid);
    for (let i = 0; i < rooms.length; i += 200) {
      await trx
        .insertInto('sliding_sync_rooms')
        .values(
          rooms.slice(i, i + 200).map((r) => ({
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
  });
}
