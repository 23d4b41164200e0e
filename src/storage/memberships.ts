/** A user's membership in one room with the JSON of its event (leaving a room this server is not in). */
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

export interface MembershipWithEvent {
  membership: string;
  eventId: string;
  /** The event's stored JSON (the caller parses it; a damaged row is skipped there). */
  json: string;
  /** The room's version (as stored with the room row). */
  roomVersion: string;
  /** Whether the event has no state (an outlier: an invite received or a knock sent over federation). */
  outlier: boolean;
}

export async function membershipWithEvent(
  db: Kysely<Database>,
  roomId: string,
  userId: string,
): Promise<MembershipWithEvent | undefined> {
  const row = await db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .innerJoin('events as e', 'e.event_nid', 'm.event_nid')
    .select(['m.membership', 'e.event_id', 'e.json', 'e.state_snapshot_nid', 'r.room_version'])
    .where('r.room_id', '=', roomId)
    .where('m.user_id', '=', userId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    membership: row.membership,
    eventId: row.event_id,
    json: row.json,
    roomVersion: row.room_version,
    outlier: row.state_snapshot_nid === null,
  };
}
