/**
 * The SQL behind the Synapse-compatible admin API: listing users and rooms, deleting a room with all its rows, and
 * purging old history while keeping the schema's invariants.
 */
import { sql, type Kysely } from 'kysely';
import type { Engine } from './dialect.js';
import type { Database, UserRow } from './schema.js';
import type { Executor } from './users.js';

export interface UserListQuery {
  from: number;
  limit: number;
  /** Substring of the user id or display name. */
  name?: string | undefined;
  /** Substring of the user id. */
  userId?: string | undefined;
  guests: boolean;
  deactivated: boolean;
  admins?: boolean | undefined;
  orderBy:
    | 'name'
    | 'is_guest'
    | 'admin'
    | 'user_type'
    | 'deactivated'
    | 'displayname'
    | 'avatar_url'
    | 'creation_ts';
  dir: 'f' | 'b';
}

const USER_ORDER = {
  name: 'user_id',
  is_guest: 'is_guest',
  admin: 'is_admin',
  user_type: 'user_type',
  deactivated: 'deactivated',
  displayname: 'displayname',
  avatar_url: 'avatar_url',
  creation_ts: 'created_ts',
} as const;

function likeEscape(s: string): string {
  return `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export async function listUsers(
  db: Executor,
  q: UserListQuery,
): Promise<{ users: (UserRow & { last_seen_ts: number | null })[]; total: number }> {
  let base = db.selectFrom('users');
  if (!q.guests) base = base.where('is_guest', '=', 0);
  if (!q.deactivated) base = base.where('deactivated', '=', 0);
  if (q.admins !== undefined) base = base.where('is_admin', '=', q.admins ? 1 : 0);
  if (q.userId) base = base.where(sql<boolean>`user_id LIKE ${likeEscape(q.userId)} ESCAPE '\\'`);
  if (q.name) {
    const pat = likeEscape(q.name);
    base = base.where(sql<boolean>`(user_id LIKE ${pat} ESCAPE '\\' OR displayname LIKE ${pat} ESCAPE '\\')`);
  }
  const totalRow = await base.select((eb) => eb.fn.countAll().as('n')).executeTakeFirst();
  const col = USER_ORDER[q.orderBy];
  const dir = q.dir === 'b' ? 'desc' : 'asc';
  const users = await base
    .selectAll('users')
    .select((eb) =>
      eb
        .selectFrom('devices')
        .whereRef('devices.user_id', '=', 'users.user_id')
        .select((e) => e.fn.max('devices.last_seen_ts').as('m'))
        .as('last_seen_ts'),
    )
    .orderBy(col, dir)
    .orderBy('user_id', dir)
    .limit(q.limit)
    .offset(q.from)
    .execute();
  return {
    users: users.map((u) => ({
      ...u,
      last_seen_ts: u.last_seen_ts === null ? null : Number(u.last_seen_ts),
    })),
    total: Number(totalRow?.n ?? 0),
  };
}

export interface RoomFacts {
  room_nid: number;
  room_id: string;
  room_version: string;
  creator: string;
  is_public: number;
  /** Content of the current state events the listing shows, by type (state key ''). */
  state: Map<string, Record<string, unknown>>;
  joined_members: number;
  state_events: number;
}

const LISTED_TYPES = [
  'm.room.name',
  'm.room.canonical_alias',
  'm.room.join_rules',
  'm.room.guest_access',
  'm.room.history_visibility',
  'm.room.encryption',
  'm.room.create',
  'm.room.topic',
  'm.room.avatar',
];

/** Every room (or one) with the facts the admin room list shows. */
export async function roomFacts(db: Kysely<Database>, roomId?: string): Promise<RoomFacts[]> {
  let q = db.selectFrom('rooms').select(['room_nid', 'room_id', 'room_version', 'creator', 'is_public']);
  if (roomId) q = q.where('room_id', '=', roomId);
  const rooms = await q.execute();
  if (rooms.length === 0) return [];
  const out = new Map<number, RoomFacts>();
  for (const r of rooms) {
    out.set(Number(r.room_nid), {
      ...r,
      room_nid: Number(r.room_nid),
      state: new Map(),
      joined_members: 0,
      state_events: 0,
    });
  }
  const nids = [...out.keys()];
  const byRoom = <R extends { room_nid: number }>(rows: R[]) =>
    rows.map((r) => ({ ...r, f: out.get(Number(r.room_nid)) }));
  const stateRows = await db
    .selectFrom('current_state as c')
    .innerJoin('events as e', 'e.event_nid', 'c.event_nid')
    .select(['c.room_nid', 'c.type', 'e.json'])
    .where('c.room_nid', 'in', nids)
    .where('c.state_key', '=', '')
    .where('c.type', 'in', LISTED_TYPES)
    .execute();
  for (const r of byRoom(stateRows)) {
    try {
      const content = (JSON.parse(r.json) as { content?: Record<string, unknown> }).content;
      if (content && r.f) r.f.state.set(r.type, content);
    } catch {
      // A damaged event shows as an absent field; the doctor reports it.
    }
  }
  const counts = await db
    .selectFrom('current_state')
    .select(['room_nid', (eb) => eb.fn.countAll().as('n')])
    .where('room_nid', 'in', nids)
    .groupBy('room_nid')
    .execute();
  for (const r of byRoom(counts)) if (r.f) r.f.state_events = Number(r.n);
  const members = await db
    .selectFrom('room_members')
    .select(['room_nid', (eb) => eb.fn.countAll().as('n')])
    .where('room_nid', 'in', nids)
    .where('membership', '=', 'join')
    .groupBy('room_nid')
    .execute();
  for (const r of byRoom(members)) if (r.f) r.f.joined_members = Number(r.n);
  return [...out.values()];
}

/** Users with the given membership in a room. */
export async function roomMemberIds(
  db: Executor,
  roomNid: number,
  memberships: readonly string[],
): Promise<string[]> {
  const rows = await db
    .selectFrom('room_members')
    .select('user_id')
    .where('room_nid', '=', roomNid)
    .where('membership', 'in', memberships)
    .orderBy('user_id')
    .execute();
  return rows.map((r) => r.user_id);
}

/**
 * Deletes a room and every row that belongs to it, in one transaction, children before parents: the read model
 * and snapshot entries (which reference events), then the events (their edges, relations, transaction ids and,
 * on PostgreSQL, search rows cascade), then the snapshots, then the room. Returns the local aliases removed.
 */
export async function deleteRoomRows(
  db: Kysely<Database>,
  engine: Engine,
  roomId: string,
): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const room = await trx
      .selectFrom('rooms')
      .select('room_nid')
      .where('room_id', '=', roomId)
      .executeTakeFirst();
    const aliases = await trx
      .selectFrom('room_aliases')
      .select('alias')
      .where('room_id', '=', roomId)
      .execute();
    await trx.deleteFrom('room_aliases').where('room_id', '=', roomId).execute();
    await trx.deleteFrom('account_data').where('room_id', '=', roomId).execute();
    if (!room) return aliases.map((a) => a.alias);
    const nid = Number(room.room_nid);
    if (engine === 'sqlite') await sql`DELETE FROM event_search WHERE room_nid = ${nid}`.execute(trx);
    await trx.updateTable('rooms').set({ current_snapshot_nid: null }).where('room_nid', '=', nid).execute();
    for (const table of ['current_state', 'room_members', 'forward_extremities', 'receipts'] as const) {
      await trx.deleteFrom(table).where('room_nid', '=', nid).execute();
    }
    await trx
      .deleteFrom('state_snapshot_entries')
      .where('snapshot_nid', 'in', (eb) =>
        eb.selectFrom('state_snapshots').select('snapshot_nid').where('room_nid', '=', nid),
      )
      .execute();
    await trx.deleteFrom('events').where('room_nid', '=', nid).execute();
    await trx.deleteFrom('state_snapshots').where('room_nid', '=', nid).execute();
    await trx.deleteFrom('rooms').where('room_nid', '=', nid).execute();
    return aliases.map((a) => a.alias);
  });
}

export interface PurgeQuery {
  roomNid: number;
  /** Events strictly before this stream ordering are candidates. */
  beforeStream?: number | undefined;
  /** Events strictly before this origin_server_ts are candidates. */
  beforeTs?: number | undefined;
  /** When false, events sent by local users are kept (Synapse's default). */
  deleteLocalEvents: boolean;
  serverName: string;
}

/**
 * Deletes old non-state events of a room. Kept: state events (snapshots, current state and membership reference
 * them), forward extremities, and anything current state, a snapshot or the membership table references; so every
 * remaining event keeps its JSON and snapshot and every snapshot entry still points at an event. Returns the count.
 */
export async function purgeHistoryRows(db: Kysely<Database>, engine: Engine, q: PurgeQuery): Promise<number> {
  return db.transaction().execute(async (trx) => {
    let sel = trx
      .selectFrom('events as e')
      .select('e.event_nid')
      .where('e.room_nid', '=', q.roomNid)
      .where('e.state_key', 'is', null)
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('forward_extremities as f')
              .select('f.event_nid')
              .whereRef('f.event_nid', '=', 'e.event_nid'),
          ),
        ),
      )
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('current_state as c')
              .select('c.event_nid')
              .whereRef('c.event_nid', '=', 'e.event_nid'),
          ),
        ),
      )
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('state_snapshot_entries as s')
              .select('s.event_nid')
              .whereRef('s.event_nid', '=', 'e.event_nid'),
          ),
        ),
      )
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('room_members as m')
              .select('m.event_nid')
              .whereRef('m.event_nid', '=', 'e.event_nid'),
          ),
        ),
      );
    if (q.beforeStream !== undefined) sel = sel.where('e.stream_ordering', '<', q.beforeStream);
    if (q.beforeTs !== undefined) sel = sel.where('e.origin_server_ts', '<', q.beforeTs);
    if (!q.deleteLocalEvents) sel = sel.where('e.sender', 'not like', `%:${q.serverName}`);
    const nids = (await sel.execute()).map((r) => Number(r.event_nid));
    for (let i = 0; i < nids.length; i += 500) {
      const chunk = nids.slice(i, i + 500);
      if (engine === 'sqlite')
        await sql`DELETE FROM event_search WHERE rowid IN (${sql.join(chunk)})`.execute(trx);
      await trx.deleteFrom('events').where('event_nid', 'in', chunk).execute();
    }
    return nids.length;
  });
}
