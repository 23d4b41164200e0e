/**
 * unread_notifications: the user's push rules evaluated over the events from others after their latest read
 * receipt (m.read or m.read.private, unthreaded or on the main timeline), or after their join when they have none.
 * An event counts when its actions notify, and highlights when they set the highlight tweak. At most the latest
 * {@link UNREAD_SCAN_LIMIT} such events are evaluated, so a long-unread room costs the same as a busy one.
 * Room facts (member count, display name, power levels) are taken from the current state, as Synapse's counts
 * would be for events sent now.
 */
import type { Kysely } from 'kysely';
import type { PushRuleset } from '../push/default-rules.js';
import { evaluateForUser, loadRoomPushFacts } from '../push/room-push.js';
import type { EventReader } from '../read/event-reader.js';
import type { Database } from '../storage/schema.js';

export const UNREAD_SCAN_LIMIT = 200;

export interface UnreadDeps {
  db: Kysely<Database>;
  reader: EventReader;
  /** The user's push rules; called at most once per room that has candidate events (memoise it per sync). */
  rules: () => Promise<PushRuleset>;
}

export async function unreadCounts(
  deps: UnreadDeps,
  roomNid: number,
  userId: string,
  joinedAt: number,
  upTo: number,
): Promise<{ notification_count: number; highlight_count: number }> {
  const { db, reader } = deps;
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
  const zero = { notification_count: 0, highlight_count: 0 };
  if (from >= upTo) return zero;
  const rows = await db
    .selectFrom('events')
    .select('event_nid')
    .where('room_nid', '=', roomNid)
    .where('stream_ordering', '>', from)
    .where('stream_ordering', '<=', upTo)
    .where('sender', '!=', userId)
    .orderBy('stream_ordering', 'desc')
    .limit(UNREAD_SCAN_LIMIT)
    .execute();
  if (rows.length === 0) return zero;
  const [events, rules, facts] = await Promise.all([
    reader.listByNids(rows.map((r) => Number(r.event_nid))),
    deps.rules(),
    loadRoomPushFacts(db, reader, roomNid, [userId]),
  ]);
  let notifications = 0;
  let highlights = 0;
  for (const ev of events) {
    const outcome = evaluateForUser(ev, userId, rules, facts);
    if (outcome?.notify) notifications++;
    if (outcome?.highlight) highlights++;
  }
  return { notification_count: notifications, highlight_count: highlights };
}
