/** Rooms two users are both joined to (GET /mutual_rooms), from the `room_members` read model. */
import type { Executor } from './users.js';

/**
 * Up to `limit` rooms both users are joined to, in room id order after `after` (exclusive), and how many such rooms
 * there are in all.
 */
export async function mutualRooms(
  db: Executor,
  userA: string,
  userB: string,
  after: string | undefined,
  limit: number,
): Promise<{ roomIds: string[]; count: number }> {
  const base = db
    .selectFrom('room_members as a')
    .innerJoin('room_members as b', 'b.room_nid', 'a.room_nid')
    .innerJoin('rooms as r', 'r.room_nid', 'a.room_nid')
    .where('a.user_id', '=', userA)
    .where('a.membership', '=', 'join')
    .where('b.user_id', '=', userB)
    .where('b.membership', '=', 'join');
  let page = base.select('r.room_id').orderBy('r.room_id').limit(limit);
  if (after !== undefined) page = page.where('r.room_id', '>', after);
  const [rows, total] = await Promise.all([
    page.execute(),
    base.select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirst(),
  ]);
  return { roomIds: rows.map((r) => r.room_id), count: Number(total?.n ?? 0) };
}
