/** Presence: one row per local user, the latest state, stamped with the stream position of its last change. */
import type { Executor } from './users.js';

export type PresenceState = 'online' | 'unavailable' | 'offline';

export interface PresenceRow {
  userId: string;
  state: PresenceState;
  statusMsg: string | null;
  lastActiveTs: number;
  currentlyActive: boolean;
}

export interface StoredPresence extends PresenceRow {
  streamPos: number;
}

function toStored(r: {
  user_id: string;
  state: string;
  status_msg: string | null;
  last_active_ts: number;
  currently_active: number;
  stream_pos: number;
}): StoredPresence {
  return {
    userId: r.user_id,
    state: r.state as PresenceState,
    statusMsg: r.status_msg,
    lastActiveTs: Number(r.last_active_ts),
    currentlyActive: Number(r.currently_active) === 1,
    streamPos: Number(r.stream_pos),
  };
}

export async function getPresence(db: Executor, userId: string): Promise<StoredPresence | undefined> {
  const row = await db.selectFrom('presence').selectAll().where('user_id', '=', userId).executeTakeFirst();
  return row ? toStored(row) : undefined;
}

export async function putPresence(db: Executor, row: PresenceRow, streamPos: number): Promise<void> {
  const values = {
    state: row.state,
    status_msg: row.statusMsg,
    last_active_ts: row.lastActiveTs,
    currently_active: row.currentlyActive ? 1 : 0,
    stream_pos: streamPos,
  };
  await db
    .insertInto('presence')
    .values({ user_id: row.userId, ...values })
    .onConflict((oc) => oc.column('user_id').doUpdateSet(values))
    .execute();
}

/** Presence of the given users changed in (since, to]; all up to `to` when `since` is null. */
export async function presenceInRange(
  db: Executor,
  userIds: readonly string[],
  since: number | null,
  to: number,
): Promise<StoredPresence[]> {
  const out: StoredPresence[] = [];
  for (let i = 0; i < userIds.length; i += 500) {
    let q = db
      .selectFrom('presence')
      .selectAll()
      .where('user_id', 'in', userIds.slice(i, i + 500))
      .where('stream_pos', '<=', to);
    if (since !== null) q = q.where('stream_pos', '>', since);
    for (const r of await q.orderBy('stream_pos').execute()) out.push(toStored(r));
  }
  return out;
}

/** Everyone joined to a room the user is joined to, the user included when joined anywhere. */
export async function usersSharingRoomWith(db: Executor, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('room_members as other')
    .innerJoin('room_members as mine', 'mine.room_nid', 'other.room_nid')
    .select('other.user_id')
    .distinct()
    .where('mine.user_id', '=', userId)
    .where('mine.membership', '=', 'join')
    .where('other.membership', '=', 'join')
    .execute();
  return rows.map((r) => r.user_id);
}

/** True when the two users are both joined to at least one room. */
export async function shareARoom(db: Executor, a: string, b: string): Promise<boolean> {
  const row = await db
    .selectFrom('room_members as x')
    .innerJoin('room_members as y', 'y.room_nid', 'x.room_nid')
    .select('x.room_nid')
    .where('x.user_id', '=', a)
    .where('x.membership', '=', 'join')
    .where('y.user_id', '=', b)
    .where('y.membership', '=', 'join')
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}
