/**
 * The events unread counts evaluate: in each room, the latest events from others than the reader after a position
 * (their read receipt or join, or where a remembered count ends) and up to the response's position.
 */
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/** Rooms one statement reads (a UNION ALL of indexed per-room reads). */
const CANDIDATE_UNION = 100;

/** Events of one room, oldest first: their nids and stream positions. */
export interface CandidateEvents {
  nids: number[];
  positions: number[];
}

/**
 * The latest `limit` events from others than `userId` in (after, upTo] of each room, oldest first (every room given
 * has an entry): one statement per 100 rooms, each part an indexed (room_nid, stream_ordering) range.
 */
export async function eventsFromOthers(
  db: Kysely<Database>,
  userId: string,
  rooms: readonly { roomNid: number; after: number }[],
  upTo: number,
  limit: number,
): Promise<Map<number, CandidateEvents>> {
  const out = new Map<number, CandidateEvents>();
  for (const r of rooms) out.set(r.roomNid, { nids: [], positions: [] });
  for (let i = 0; i < rooms.length; i += CANDIDATE_UNION) {
    const parts = rooms
      .slice(i, i + CANDIDATE_UNION)
      .map((r, k) =>
        db
          .selectFrom(
            db
              .selectFrom('events')
              .select(['room_nid', 'event_nid', 'stream_ordering'])
              .where('room_nid', '=', r.roomNid)
              .where('stream_ordering', '>', r.after)
              .where('stream_ordering', '<=', upTo)
              .where('sender', '!=', userId)
              .orderBy('stream_ordering', 'desc')
              .limit(limit)
              .as(`c${k}`),
          )
          .selectAll(),
      );
    const [first, ...rest] = parts;
    if (!first) continue;
    const rows = await rest.reduce((acc, p) => acc.unionAll(p), first).execute();
    rows.sort((a, b) => Number(a.stream_ordering) - Number(b.stream_ordering));
    for (const row of rows) {
      const c = out.get(Number(row.room_nid));
      if (!c) continue;
      c.nids.push(Number(row.event_nid));
      c.positions.push(Number(row.stream_ordering));
    }
  }
  return out;
}
