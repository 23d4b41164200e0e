/**
 * unread_notifications: messages from others after the user's latest read receipt (m.read or m.read.private,
 * unthreaded or on the main timeline), or after their join when they have none. A message highlights when it
 * mentions the user (m.mentions.user_ids) or the room (@room). Push rules are not evaluated per event here.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/schema.js';

const COUNTED_TYPES = ['m.room.message', 'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start'];

export async function unreadCounts(
  db: Kysely<Database>,
  roomNid: number,
  userId: string,
  joinedAt: number,
  upTo: number,
): Promise<{ notification_count: number; highlight_count: number }> {
  const receipt = await db
    .selectFrom('receipts as r')
    .innerJoin('events as e', 'e.event_id', 'r.event_id')
    .select((eb) => eb.fn.max('e.stream_ordering').as('pos'))
    .where('r.room_nid', '=', roomNid)
    .where('r.user_id', '=', userId)
    .where('r.receipt_type', 'in', ['m.read', 'm.read.private'])
    .where('r.thread_id', 'in', ['', 'main'])
    .executeTakeFirst();
  const from = Math.max(joinedAt, Number(receipt?.pos ?? 0));
  const needle = `%${JSON.stringify(userId).replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  const row = await db
    .selectFrom('events')
    .select([
      (eb) => eb.fn.countAll().as('n'),
      sql<number>`SUM(CASE WHEN json LIKE ${needle} ESCAPE '\\' OR json LIKE ${'%"room":true%'} THEN 1 ELSE 0 END)`.as(
        'h',
      ),
    ])
    .where('room_nid', '=', roomNid)
    .where('stream_ordering', '>', from)
    .where('stream_ordering', '<=', upTo)
    .where('sender', '!=', userId)
    .where('type', 'in', COUNTED_TYPES)
    .executeTakeFirst();
  return { notification_count: Number(row?.n ?? 0), highlight_count: Number(row?.h ?? 0) };
}
