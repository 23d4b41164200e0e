/** SQL reads of the sync read model. */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/schema.js';
import { WatchedMemo } from '../storage/watched-memo.js';
import type { RoomEventFilter } from './filter.js';

export interface MembershipRow {
  room_nid: number;
  room_id: string;
  room_version: string;
  membership: string;
  event_nid: number;
  stream_ordering: number;
  forgotten: number;
}

/**
 * A user's memberships, asked by every /sync (twice per long-poll woken): remembered until any write to
 * `room_members` (write-watch kind `members`). The rows are frozen; callers get their own array.
 */
const memberships = new WatchedMemo<MembershipRow[]>(
  'sync_memberships',
  ['members'],
  (v) => [...v],
  200_000,
  (v) => 1 + v.length,
);

export function membershipsOf(db: Kysely<Database>, userId: string): Promise<MembershipRow[]> {
  return memberships.get(db, userId, () => readMemberships(db, userId));
}

async function readMemberships(db: Kysely<Database>, userId: string): Promise<MembershipRow[]> {
  const rows = await db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .select([
      'm.room_nid',
      'r.room_id',
      'r.room_version',
      'm.membership',
      'm.event_nid',
      'm.stream_ordering',
      'm.forgotten',
    ])
    .where('m.user_id', '=', userId)
    .execute();
  return rows.map((r) =>
    Object.freeze({
      ...r,
      room_nid: Number(r.room_nid),
      event_nid: Number(r.event_nid),
      stream_ordering: Number(r.stream_ordering),
    }),
  );
}

/** Converts a filter type pattern (with `*` wildcards) to a LIKE pattern. */
function likePattern(p: string): string {
  return p.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%');
}

/**
 * The newest `limit` events of a room with `after < stream_ordering <= upTo` (after = null for no lower bound),
 * matching the timeline filter; returns their nids oldest first and whether more matched.
 */
export async function timelineNids(
  db: Kysely<Database>,
  roomNid: number,
  after: number | null,
  upTo: number,
  limit: number,
  filter: RoomEventFilter | undefined,
): Promise<{ nids: number[]; streams: number[]; limited: boolean }> {
  let q = db
    .selectFrom('events')
    .select(['event_nid', 'stream_ordering'])
    .where('room_nid', '=', roomNid)
    .where('outlier', '=', 0)
    .where('stream_ordering', '<=', upTo);
  if (after !== null) q = q.where('stream_ordering', '>', after);
  if (filter?.types) {
    const types = filter.types;
    q = q.where((eb) =>
      eb.or(types.map((t) => (t.includes('*') ? eb('type', 'like', likePattern(t)) : eb('type', '=', t)))),
    );
  }
  if (filter?.not_types?.length) {
    for (const t of filter.not_types)
      q = q.where((eb) => (t.includes('*') ? eb('type', 'not like', likePattern(t)) : eb('type', '!=', t)));
  }
  if (filter?.senders)
    q = filter.senders.length ? q.where('sender', 'in', filter.senders) : q.where(sql<boolean>`1 = 0`);
  if (filter?.not_senders?.length) q = q.where('sender', 'not in', filter.not_senders);
  if (filter?.contains_url !== undefined) q = q.where('contains_url', '=', filter.contains_url ? 1 : 0);
  const rows = await q
    .orderBy('stream_ordering', 'desc')
    .limit(limit + 1)
    .execute();
  const limited = rows.length > limit;
  const kept = rows.slice(0, limit).reverse();
  return {
    nids: kept.map((r) => Number(r.event_nid)),
    streams: kept.map((r) => Number(r.stream_ordering)),
    limited,
  };
}

/** Rooms among `roomNids` with any event in (after, upTo]. */
export async function roomsWithEvents(
  db: Kysely<Database>,
  roomNids: number[],
  after: number,
  upTo: number,
): Promise<Set<number>> {
  if (roomNids.length === 0 || upTo <= after) return new Set();
  const out = new Set<number>();
  for (let i = 0; i < roomNids.length; i += 500) {
    const rows = await db
      .selectFrom('events')
      .select('room_nid')
      .distinct()
      .where('room_nid', 'in', roomNids.slice(i, i + 500))
      .where('stream_ordering', '>', after)
      .where('stream_ordering', '<=', upTo)
      .execute();
    for (const r of rows) out.add(Number(r.room_nid));
  }
  return out;
}

/** The last event of a room at or before `pos`: its nid, snapshot (state before it) and whether it is state. */
export async function lastEventAtOrBefore(
  db: Kysely<Database>,
  roomNid: number,
  pos: number,
): Promise<
  { event_nid: number; state_snapshot_nid: number | null; type: string; state_key: string | null } | undefined
> {
  const row = await db
    .selectFrom('events')
    .select(['event_nid', 'state_snapshot_nid', 'type', 'state_key'])
    .where('room_nid', '=', roomNid)
    .where('outlier', '=', 0)
    .where('stream_ordering', '<=', pos)
    .orderBy('stream_ordering', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    ...row,
    event_nid: Number(row.event_nid),
    state_snapshot_nid: row.state_snapshot_nid === null ? null : Number(row.state_snapshot_nid),
  };
}

/** A room's joined and invited members (the summary's counts and heroes): remembered until a membership write. */
const roomMembers = new WatchedMemo<MemberCounts>(
  'sync_room_members',
  ['members'],
  (v) => ({ ...v, heroes: [...v.heroes] }),
  200_000,
  (v) => 1 + v.heroes.length,
);

export interface MemberCounts {
  joined: number;
  invited: number;
  /** Joined and invited members, sorted by user id. */
  heroes: string[];
}

export async function memberCounts(db: Kysely<Database>, roomNid: number): Promise<MemberCounts> {
  return (await memberCountsOfRooms(db, [roomNid])).get(roomNid) ?? { joined: 0, invited: 0, heroes: [] };
}

/** {@link memberCounts} of many rooms: those not remembered are read in one statement per 500 rooms. */
export async function memberCountsOfRooms(
  db: Kysely<Database>,
  roomNids: readonly number[],
): Promise<Map<number, MemberCounts>> {
  const found = await roomMembers.getMany(db, roomNids.map(String), async (keys) => {
    const out = new Map<string, MemberCounts>(keys.map((k) => [k, { joined: 0, invited: 0, heroes: [] }]));
    for (let i = 0; i < keys.length; i += 500) {
      const rows = await db
        .selectFrom('room_members')
        .select(['room_nid', 'user_id', 'membership'])
        .where(
          'room_nid',
          'in',
          keys.slice(i, i + 500).map((k) => Number(k)),
        )
        .where('membership', 'in', ['join', 'invite'])
        .orderBy('room_nid')
        .orderBy('user_id')
        .execute();
      for (const r of rows) {
        const c = out.get(String(r.room_nid)) as MemberCounts;
        if (r.membership === 'join') c.joined++;
        else c.invited++;
        c.heroes.push(r.user_id);
      }
    }
    return out;
  });
  return new Map([...found].map(([k, v]) => [Number(k), v]));
}

export async function snapshotOfEvent(db: Kysely<Database>, eventNid: number): Promise<number | null> {
  const row = await db
    .selectFrom('events')
    .select('state_snapshot_nid')
    .where('event_nid', '=', eventNid)
    .executeTakeFirst();
  return row?.state_snapshot_nid === undefined || row.state_snapshot_nid === null
    ? null
    : Number(row.state_snapshot_nid);
}

/** Which per-user streams have anything for an incremental sync in (since, to]; true means "maybe". */
export interface StreamActivity {
  accountData: boolean;
  /** Any to-device message is stored for the device at all (to acknowledge or to deliver). */
  toDevice: boolean;
  receipts: boolean;
  presence: boolean;
  deviceLists: boolean;
}

type ActivityRow = Record<'account_data' | 'to_device' | 'receipts' | 'presence' | 'device_lists', unknown>;

/**
 * One statement telling a woken incremental sync which of its per-user streams can have something new, so it runs
 * the queries of those streams only. Read from the tables themselves (never from what the process remembers), so
 * it is exact whatever wrote the rows and whenever their writers woke the long-polls.
 */
export async function streamActivity(
  db: Kysely<Database>,
  userId: string,
  deviceId: string,
  since: number,
  to: number,
): Promise<StreamActivity> {
  // Written as SQL text: asked by every woken sync, and Kysely's builder cost more than the statement itself.
  const { rows } = await sql<ActivityRow>`SELECT
      EXISTS (SELECT 1 FROM account_data
        WHERE user_id = ${userId} AND stream_pos > ${since} AND stream_pos <= ${to}) AS account_data,
      EXISTS (SELECT 1 FROM to_device_messages WHERE user_id = ${userId} AND device_id = ${deviceId}) AS to_device,
      EXISTS (SELECT 1 FROM receipts
        WHERE stream_pos > ${since} AND stream_pos <= ${to} AND room_nid IN
          (SELECT room_nid FROM room_members WHERE user_id = ${userId} AND membership = 'join')) AS receipts,
      EXISTS (SELECT 1 FROM presence WHERE stream_pos > ${since} AND stream_pos <= ${to}) AS presence,
      EXISTS (SELECT 1 FROM device_list_changes
        WHERE stream_pos > ${since} AND stream_pos <= ${to}) AS device_lists`.execute(db);
  const row = rows[0];
  if (!row) throw new Error('the stream activity probe returned no row');
  const yes = (v: unknown): boolean => v === true || Number(v) > 0;
  return {
    accountData: yes(row.account_data),
    toDevice: yes(row.to_device),
    receipts: yes(row.receipts),
    presence: yes(row.presence),
    deviceLists: yes(row.device_lists),
  };
}
