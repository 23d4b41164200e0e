/**
 * The candidate events of unread counts (storage/unread-candidates.ts), taken from the room change cache's latest
 * events where it knows every event of the room in the range (a long-poll woken by a message: no statement), and
 * read from the database for the other rooms.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.js';
import { eventsFromOthers, type CandidateEvents } from '../storage/unread-candidates.js';
import type { RoomChangeCache } from './change-cache.js';

export interface CandidateRoom {
  roomNid: number;
  /** Without it the room is always read from the database. */
  roomId?: string;
  after: number;
}

/** The latest `limit` events from others than `userId` in (after, upTo] of each room, oldest first. */
export async function unreadCandidates(
  db: Kysely<Database>,
  changes: RoomChangeCache | undefined,
  userId: string,
  rooms: readonly CandidateRoom[],
  upTo: number,
  limit: number,
): Promise<Map<number, CandidateEvents>> {
  const out = new Map<number, CandidateEvents>();
  const query: CandidateRoom[] = [];
  for (const r of rooms) {
    const known =
      changes && r.roomId !== undefined
        ? changes.recentFromOthers(r.roomId, r.after, upTo, userId, limit)
        : undefined;
    if (known) out.set(r.roomNid, known);
    else query.push(r);
  }
  if (query.length)
    for (const [nid, c] of await eventsFromOthers(db, userId, query, upTo, limit)) out.set(nid, c);
  return out;
}
