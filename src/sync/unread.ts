/**
 * unread_notifications: the user's push rules evaluated over the events from others after their latest read
 * receipt (m.read or m.read.private, unthreaded or on the main timeline), or after their join when they have none.
 * An event counts when its actions notify, and highlights when they set the highlight tweak. At most the latest
 * {@link UNREAD_SCAN_LIMIT} such events are evaluated, so a long-unread room costs the same as a busy one.
 * Room facts (member count, display name, power levels) are taken from the current state, as Synapse's counts
 * would be for events sent now. Many rooms are counted together: receipts and room facts take a few queries in
 * all, the events one indexed query per room.
 */
import type { Kysely } from 'kysely';
import type { PushRuleset } from '../push/default-rules.js';
import { evaluateForUser, loadRoomsPushFacts } from '../push/room-push.js';
import type { EventReader } from '../read/event-reader.js';
import type { Database } from '../storage/schema.js';

export const UNREAD_SCAN_LIMIT = 200;
const CHUNK = 500;
/** Per-room event queries in flight at once. */
const PARALLEL = 8;

export interface UnreadDeps {
  db: Kysely<Database>;
  reader: EventReader;
  /** The user's push rules; called at most once per computation, and only when some room has candidates. */
  rules: () => Promise<PushRuleset>;
}

export interface UnreadCounts {
  notification_count: number;
  highlight_count: number;
}

export interface UnreadRoom {
  roomNid: number;
  /** The stream position of the user's current join. */
  joinedAt: number;
}

/** The counts of one room. */
export async function unreadCounts(
  deps: UnreadDeps,
  roomNid: number,
  userId: string,
  joinedAt: number,
  upTo: number,
): Promise<UnreadCounts> {
  const all = await unreadCountsForRooms(deps, userId, [{ roomNid, joinedAt }], upTo);
  return all.get(roomNid) ?? { notification_count: 0, highlight_count: 0 };
}

/** The counts of many rooms, by room nid. */
export async function unreadCountsForRooms(
  deps: UnreadDeps,
  userId: string,
  rooms: readonly UnreadRoom[],
  upTo: number,
): Promise<Map<number, UnreadCounts>> {
  const { db, reader } = deps;
  const out = new Map<number, UnreadCounts>();
  for (const r of rooms) out.set(r.roomNid, { notification_count: 0, highlight_count: 0 });
  const from = new Map(rooms.map((r) => [r.roomNid, r.joinedAt]));
  const nids = rooms.map((r) => r.roomNid);
  for (let i = 0; i < nids.length; i += CHUNK) {
    const receipts = await db
      .selectFrom('receipts as r')
      .innerJoin('events as e', 'e.event_id', 'r.event_id')
      .select(['r.room_nid', (eb) => eb.fn.max('e.stream_ordering').as('pos')])
      .where('r.room_nid', 'in', nids.slice(i, i + CHUNK))
      .where('r.user_id', '=', userId)
      .where('r.receipt_type', 'in', ['m.read', 'm.read.private'])
      .where('r.thread_id', 'in', ['', 'main'])
      .groupBy('r.room_nid')
      .execute();
    for (const r of receipts) {
      const nid = Number(r.room_nid);
      from.set(nid, Math.max(from.get(nid) ?? 0, Number(r.pos ?? 0)));
    }
  }
  const pending = rooms.filter((r) => (from.get(r.roomNid) ?? 0) < upTo);
  const candidates = new Map<number, number[]>();
  for (let i = 0; i < pending.length; i += PARALLEL) {
    await Promise.all(
      pending.slice(i, i + PARALLEL).map(async (r) => {
        const rows = await db
          .selectFrom('events')
          .select('event_nid')
          .where('room_nid', '=', r.roomNid)
          .where('stream_ordering', '>', from.get(r.roomNid) ?? 0)
          .where('stream_ordering', '<=', upTo)
          .where('sender', '!=', userId)
          .orderBy('stream_ordering', 'desc')
          .limit(UNREAD_SCAN_LIMIT)
          .execute();
        if (rows.length)
          candidates.set(
            r.roomNid,
            rows.map((row) => Number(row.event_nid)),
          );
      }),
    );
  }
  if (candidates.size === 0) return out;
  const [events, rules, facts] = await Promise.all([
    reader.byNids([...candidates.values()].flat()),
    deps.rules(),
    loadRoomsPushFacts(db, reader, [...candidates.keys()], [userId]),
  ]);
  for (const [roomNid, eventNids] of candidates) {
    const roomFacts = facts.get(roomNid);
    const counts = out.get(roomNid);
    if (!roomFacts || !counts) continue;
    for (const nid of eventNids) {
      const ev = events.get(nid);
      if (!ev) continue;
      const outcome = evaluateForUser(ev, userId, rules, roomFacts);
      if (outcome?.notify) counts.notification_count++;
      if (outcome?.highlight) counts.highlight_count++;
    }
  }
  return out;
}
