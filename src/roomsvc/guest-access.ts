/**
 * Guest access revocation (client-server API module "Guest Access", server behaviour): when a room's
 * `m.room.guest_access` stops being `can_join`, the local guest users joined to it are made to leave. As in Synapse
 * (RoomMemberHandler.kick_guest_users), each guest leaves by its own leave event, so no power level is needed.
 * Runs after the commit of the state change, best effort: a failure is logged, the other guests still leave.
 */
import type { Logger } from 'pino';
import type { CommittedBatch, RoomWriter } from '../input/room-writer.js';
import { lookupIn } from '../input/room-head.js';
import type { Storage } from '../storage/db.js';

export interface GuestAccessDeps {
  storage: Storage;
  writer: RoomWriter;
  log: Pick<Logger, 'warn'>;
}

async function joinedGuests(storage: Storage, roomId: string): Promise<string[]> {
  const rows = await storage.db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .innerJoin('users as u', 'u.user_id', 'm.user_id')
    .select('m.user_id')
    .where('r.room_id', '=', roomId)
    .where('m.membership', '=', 'join')
    .where('u.is_guest', '=', 1)
    .execute();
  return rows.map((r) => r.user_id);
}

/** Makes the joined local guests of `roomId` leave if the room's current guest access is not `can_join`. */
export async function kickGuests(deps: GuestAccessDeps, roomId: string): Promise<void> {
  const guests = await joinedGuests(deps.storage, roomId);
  for (const userId of guests) {
    try {
      const head = await deps.writer.head(roomId);
      if (!head) return;
      const lookup = lookupIn(head.state);
      // Access may have been granted again meanwhile.
      if (lookup('m.room.guest_access', '')?.content.guest_access === 'can_join') return;
      if (lookup('m.room.member', userId)?.content.membership !== 'join') continue;
      await deps.writer.send(roomId, {
        type: 'm.room.member',
        state_key: userId,
        sender: userId,
        content: { membership: 'leave', kind: 'guest' },
      });
    } catch (err) {
      deps.log.warn({ err, userId, roomId }, 'guest access: could not make a guest leave the room');
    }
  }
}

/** The commit listener: watches committed `m.room.guest_access` changes. */
export function guestAccessEnforcer(deps: GuestAccessDeps): (batch: CommittedBatch) => void {
  return (batch) => {
    const revoked = batch.events.some(
      (e) =>
        e.pdu.type === 'm.room.guest_access' &&
        e.pdu.state_key === '' &&
        e.pdu.content.guest_access !== 'can_join',
    );
    if (!revoked) return;
    // Not awaited: the listener runs right after the commit, and the leaves queue behind it in the room's writer.
    kickGuests(deps, batch.roomId).catch((err: unknown) =>
      deps.log.warn({ err, roomId: batch.roomId }, 'guest access: could not list the guests of the room'),
    );
  };
}
