/**
 * SQL of simplified sliding sync (MSC4186): the user's rooms with their bump stamps in one query and the bulk facts
 * list filters need. The per-connection state is in sliding-sync-connections.ts.
 */
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

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
      // Outliers have no stream position: max() alone reads only the (room_nid, stream_ordering) index.
      eb
        .selectFrom('events as e2')
        .select((e) => e.fn.max('e2.stream_ordering').as('m'))
        .whereRef('e2.room_nid', '=', 'm.room_nid')
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
