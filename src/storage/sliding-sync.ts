/**
 * SQL of simplified sliding sync (MSC4186): the user's rooms with their bump stamps in one query and the bulk facts
 * list filters need. The per-connection state is in sliding-sync-connections.ts.
 */
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';
import { getAccountData } from './account-data.js';
import { bumpIndexFor } from './sliding-sync-bumps.js';
import { WatchedMemo } from './watched-memo.js';

export { BUMP_EVENT_TYPES } from './sliding-sync-bumps.js';

const CHUNK = 500;

export interface UserRoomRow {
  roomNid: number;
  roomId: string;
  membership: string;
  eventNid: number;
  /** Stream position of the user's membership event. */
  membershipStream: number;
  /** Sender of the user's membership event (a kick or ban has another sender; an invite's is the inviter). Read for
   * leave, ban and invite rows only (null otherwise). */
  membershipSender: string | null;
  forgotten: boolean;
  /** Stream position of the room's latest bump event (null when there is none, e.g. a remote invite). */
  bump: number | null;
  /** Stream position of the room's latest event (null when none). */
  last: number | null;
}

/**
 * Every room the user has a membership row in, with bump stamp and latest position as of `upTo` (a position at or
 * below the stream's current): one indexed read of the user's memberships joined to the derived bump table
 * (remembered until a write to either), plus the in-memory part of the bump index (see sliding-sync-bumps.ts).
 */
export async function userRooms(db: Kysely<Database>, userId: string, upTo: number): Promise<UserRoomRow[]> {
  const index = bumpIndexFor(db);
  await index.ensure(upTo);
  // Remembered until a write to room_members (write-watch.ts) or to the bump table (its generation is in the key).
  const { result: rows, overlay } = await index.read(() =>
    userRoomsMemo.get(db, `${userId}\u0000${index.tableGeneration}`, () => readUserRooms(db, userId)),
  );
  const out: UserRoomRow[] = [];
  for (const r of rows) {
    const over = overlay.get(r.roomNid);
    out.push({
      ...r,
      bump: over ? newest(r.bump, over.bump) : r.bump,
      last: over ? newest(r.last, over.last) : r.last,
    });
  }
  return out;
}

/** The user's rows as read from the tables (bump and last from the table only). */
const userRoomsMemo = new WatchedMemo<readonly UserRoomRow[]>(
  'sliding_user_rooms',
  ['members'],
  (v) => v,
  200_000,
  (v) => v.length + 1,
);

async function readUserRooms(db: Kysely<Database>, userId: string): Promise<readonly UserRoomRow[]> {
  const rows = await db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .leftJoin('sliding_sync_room_bumps as b', 'b.room_nid', 'm.room_nid')
    .select(['m.room_nid', 'r.room_id', 'm.membership', 'm.event_nid', 'm.stream_ordering', 'm.forgotten'])
    .select(['b.bump', 'b.last'])
    .where('m.user_id', '=', userId)
    .execute();
  // The sender of the membership event tells a kick or ban from a leave, and names the inviter of an invite (whom
  // the user may ignore): read only for the (few) rooms left or invited to.
  const left = rows
    .filter((r) => r.membership === 'leave' || r.membership === 'ban' || r.membership === 'invite')
    .map((r) => Number(r.event_nid));
  const senders = new Map<number, string>();
  for (let i = 0; i < left.length; i += CHUNK) {
    const found = await db
      .selectFrom('events')
      .select(['event_nid', 'sender'])
      .where('event_nid', 'in', left.slice(i, i + CHUNK))
      .execute();
    for (const f of found) senders.set(Number(f.event_nid), f.sender);
  }
  // Frozen: the remembered rows are shared by every later call.
  return Object.freeze(
    rows.map((r) => {
      const eventNid = Number(r.event_nid);
      return Object.freeze({
        roomNid: Number(r.room_nid),
        roomId: r.room_id,
        membership: r.membership,
        eventNid,
        membershipStream: Number(r.stream_ordering),
        membershipSender: senders.get(eventNid) ?? null,
        forgotten: Number(r.forgotten) !== 0,
        bump: r.bump === null || r.bump === undefined ? null : Number(r.bump),
        last: r.last === null || r.last === undefined ? null : Number(r.last),
      });
    }),
  );
}

function newest(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return a > b ? a : b;
}

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

/** Global account data remembered until any account data write (m.direct is read by every answer with rooms). */
const globalDataMemo = new WatchedMemo<{ raw: string | undefined }>(
  'sliding_global_account_data',
  ['account_data'],
  (v) => ({ ...v }),
);

/** The raw JSON of one of the user's global account data types (undefined: none), remembered (see above). */
export function globalAccountData(
  db: Kysely<Database>,
  userId: string,
  type: string,
): Promise<string | undefined> {
  return globalDataMemo
    .get(db, `${userId}\u0000${type}`, async () => ({ raw: await getAccountData(db, userId, '', type) }))
    .then((v) => v.raw);
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

export interface TimelineQuery {
  roomNid: number;
  /** Only events after this stream position (null: from the start). */
  after: number | null;
  upTo: number;
  limit: number;
}

export interface TimelineRows {
  /** Event nids, oldest first. */
  nids: number[];
  streams: number[];
  /** More events than `limit` matched. */
  limited: boolean;
}

/** Rooms per statement of a batched timeline query (SQLite allows 500 terms in a compound select). */
const TIMELINE_UNION = 100;

/**
 * The latest `limit` events (oldest first) in (after, upTo] of many rooms in one statement per 100 rooms: a UNION ALL
 * of one indexed (room_nid, stream_ordering) lookup per room, as /sync's timeline query does for one room.
 */
export async function timelinesOf(
  db: Kysely<Database>,
  queries: readonly TimelineQuery[],
): Promise<Map<number, TimelineRows>> {
  const out = new Map<number, TimelineRows>();
  for (const q of queries) out.set(q.roomNid, { nids: [], streams: [], limited: false });
  for (let i = 0; i < queries.length; i += TIMELINE_UNION) {
    const parts = queries.slice(i, i + TIMELINE_UNION).map((q, k) => {
      let sub = db
        .selectFrom('events')
        .select(['room_nid', 'event_nid', 'stream_ordering'])
        .where('room_nid', '=', q.roomNid)
        .where('outlier', '=', 0)
        .where('stream_ordering', '<=', q.upTo);
      if (q.after !== null) sub = sub.where('stream_ordering', '>', q.after);
      const limited = sub.orderBy('stream_ordering', 'desc').limit(q.limit + 1);
      return db.selectFrom(limited.as(`t${k}`)).selectAll();
    });
    const [first, ...rest] = parts;
    if (!first) continue;
    const rows = await rest.reduce((acc, p) => acc.unionAll(p), first).execute();
    const byRoom = new Map<number, { nid: number; stream: number }[]>();
    for (const r of rows) {
      const nid = Number(r.room_nid);
      const list = byRoom.get(nid) ?? [];
      list.push({ nid: Number(r.event_nid), stream: Number(r.stream_ordering) });
      byRoom.set(nid, list);
    }
    for (const q of queries.slice(i, i + TIMELINE_UNION)) {
      const list = (byRoom.get(q.roomNid) ?? []).sort((a, b) => b.stream - a.stream);
      const kept = list.slice(0, q.limit).reverse();
      out.set(q.roomNid, {
        nids: kept.map((e) => e.nid),
        streams: kept.map((e) => e.stream),
        limited: list.length > q.limit,
      });
    }
  }
  return out;
}

export interface RoomMembers {
  joined: number;
  invited: number;
  /** Joined and invited members, sorted by user id. */
  members: string[];
}

/** Joined and invited members of many rooms (room_nid → counts and ids): one query per 500 rooms. */
export async function membersOfRooms(
  db: Kysely<Database>,
  roomNids: readonly number[],
): Promise<Map<number, RoomMembers>> {
  const out = new Map<number, RoomMembers>();
  for (const nid of roomNids) out.set(nid, { joined: 0, invited: 0, members: [] });
  for (let i = 0; i < roomNids.length; i += CHUNK) {
    const rows = await db
      .selectFrom('room_members')
      .select(['room_nid', 'user_id', 'membership'])
      .where('room_nid', 'in', roomNids.slice(i, i + CHUNK))
      .where('membership', 'in', ['join', 'invite'])
      .orderBy('room_nid')
      .orderBy('user_id')
      .execute();
    for (const r of rows) {
      const m = out.get(Number(r.room_nid));
      if (!m) continue;
      if (r.membership === 'join') m.joined++;
      else m.invited++;
      m.members.push(r.user_id);
    }
  }
  return out;
}

/** Receipt positions remembered until any receipt write (the connections a message wakes read theirs again). */
const receiptMemo = new WatchedMemo<Map<number, number>>('sliding_receipts', ['receipts'], (v) => new Map(v));

/**
 * Stream position of the user's latest read receipt (m.read or m.read.private, main timeline) per room; remembered
 * per user and set of rooms until any write to `receipts` (write-watch.ts).
 */
export function readReceiptPositions(
  db: Kysely<Database>,
  userId: string,
  roomNids: readonly number[],
): Promise<Map<number, number>> {
  const key = `${userId}\u0000${[...roomNids].sort((a, b) => a - b).join(',')}`;
  return receiptMemo.get(db, key, () => readReceiptsFromDb(db, userId, roomNids));
}

async function readReceiptsFromDb(
  db: Kysely<Database>,
  userId: string,
  roomNids: readonly number[],
): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (let i = 0; i < roomNids.length; i += CHUNK) {
    const rows = await db
      .selectFrom('receipts as r')
      .innerJoin('events as e', 'e.event_id', 'r.event_id')
      .select(['r.room_nid', (eb) => eb.fn.max('e.stream_ordering').as('pos')])
      .where('r.room_nid', 'in', roomNids.slice(i, i + CHUNK))
      .where('r.user_id', '=', userId)
      .where('r.receipt_type', 'in', ['m.read', 'm.read.private'])
      .where('r.thread_id', 'in', ['', 'main'])
      .groupBy('r.room_nid')
      .execute();
    for (const r of rows) out.set(Number(r.room_nid), Number(r.pos ?? 0));
  }
  return out;
}
