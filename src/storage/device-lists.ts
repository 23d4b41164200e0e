/** Device-list change rows, and the room-sharing queries that decide who is told about them. */
import type { Executor } from './users.js';

export async function insertDeviceListChange(
  db: Executor,
  streamPos: number,
  userId: string,
  onlySelf: boolean,
): Promise<void> {
  await db
    .insertInto('device_list_changes')
    .values({ stream_pos: streamPos, user_id: userId, only_self: onlySelf ? 1 : 0 })
    .onConflict((oc) => oc.doNothing())
    .execute();
}

/** Users with a change row in (from, to]; `onlySelf` rows are included only for `viewer`. */
export async function usersChangedBetween(
  db: Executor,
  viewer: string,
  from: number,
  to: number,
): Promise<string[]> {
  const rows = await db
    .selectFrom('device_list_changes')
    .select('user_id')
    .distinct()
    .where('stream_pos', '>', from)
    .where('stream_pos', '<=', to)
    .where((eb) => eb.or([eb('only_self', '=', 0), eb('user_id', '=', viewer)]))
    .execute();
  return rows.map((r) => r.user_id);
}

/** Room nids where the user's membership is join. */
export async function joinedRoomNids(db: Executor, userId: string): Promise<number[]> {
  const rows = await db
    .selectFrom('room_members')
    .select('room_nid')
    .where('user_id', '=', userId)
    .where('membership', '=', 'join')
    .execute();
  return rows.map((r) => Number(r.room_nid));
}

/** Users joined to any of the rooms. */
export async function joinedMembersOf(db: Executor, roomNids: readonly number[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < roomNids.length; i += 500) {
    const rows = await db
      .selectFrom('room_members')
      .select('user_id')
      .distinct()
      .where('room_nid', 'in', roomNids.slice(i, i + 500))
      .where('membership', '=', 'join')
      .execute();
    for (const r of rows) out.add(r.user_id);
  }
  return out;
}

export interface MembershipChange {
  room_nid: number;
  user_id: string;
  membership: string;
}

/** Current memberships in the rooms whose last change lies in (from, to]. */
export async function membershipChangesIn(
  db: Executor,
  roomNids: readonly number[],
  from: number,
  to: number,
): Promise<MembershipChange[]> {
  const out: MembershipChange[] = [];
  for (let i = 0; i < roomNids.length; i += 500) {
    const rows = await db
      .selectFrom('room_members')
      .select(['room_nid', 'user_id', 'membership'])
      .where('room_nid', 'in', roomNids.slice(i, i + 500))
      .where('stream_ordering', '>', from)
      .where('stream_ordering', '<=', to)
      .execute();
    for (const r of rows) out.push({ ...r, room_nid: Number(r.room_nid) });
  }
  return out;
}

/** The user's own membership rows that changed in (from, to]. */
export async function ownMembershipChanges(
  db: Executor,
  userId: string,
  from: number,
  to: number,
): Promise<MembershipChange[]> {
  const rows = await db
    .selectFrom('room_members')
    .select(['room_nid', 'user_id', 'membership'])
    .where('user_id', '=', userId)
    .where('stream_ordering', '>', from)
    .where('stream_ordering', '<=', to)
    .execute();
  return rows.map((r) => ({ ...r, room_nid: Number(r.room_nid) }));
}

/** Room ids of the rooms the user is joined to (for waking long-polls). */
export async function joinedRoomIds(db: Executor, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .select('r.room_id')
    .where('m.user_id', '=', userId)
    .where('m.membership', '=', 'join')
    .execute();
  return rows.map((r) => r.room_id);
}
