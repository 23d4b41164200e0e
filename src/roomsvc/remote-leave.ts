/**
 * Leaving a room this server is not in (server-server API "Leaving Rooms (Rejecting Invites)"): a local user's
 * invite received over federation is rejected, or their knock rescinded, with make_leave and send_leave through the
 * servers the invite or knock names (the inviting server, the senders of its stripped state, the room id's server).
 * The leave then replaces the membership, so /sync moves the room to `rooms.leave`.
 */
import { MatrixError } from '../api/errors.js';
import type { JsonObject } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import { membershipWithEvent } from '../storage/memberships.js';
import { memberContent } from './create-room.js';
import { handshake, type RemoteJoinDeps } from './remote-membership.js';

/** The servers that may be resident in the room, from the invite (knock) event and its stripped state. */
export function residentCandidates(roomId: string, event: JsonObject, ownServer: string): string[] {
  const out = new Set<string>();
  const add = (id: unknown) => {
    const s = typeof id === 'string' ? serverNameOf(id) : undefined;
    if (s && s !== ownServer) out.add(s);
  };
  add(event.sender);
  const unsigned = (event.unsigned ?? {}) as JsonObject;
  for (const list of [unsigned.invite_room_state, unsigned.knock_room_state])
    for (const e of Array.isArray(list) ? list : [])
      if (typeof e === 'object' && e !== null) add((e as JsonObject).sender);
  add(roomId);
  return [...out];
}

function parsed(json: string): JsonObject {
  try {
    const v: unknown = JSON.parse(json);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : {};
  } catch {
    return {}; // a damaged row: fall back to the room id's server
  }
}

/**
 * Whether `userId` holds an invite or a knock in `roomId` known only from federation (no state here): then a leave
 * goes through leaveOverFederation.
 */
export async function pendingRemoteMembership(
  deps: Pick<RemoteJoinDeps, 'storage'>,
  roomId: string,
  userId: string,
): Promise<boolean> {
  const m = await membershipWithEvent(deps.storage.db, roomId, userId);
  return !!m && m.outlier && (m.membership === 'invite' || m.membership === 'knock');
}

/** Rejects the user's invite (rescinds their knock) to a room this server is not in. */
export async function leaveOverFederation(
  deps: RemoteJoinDeps,
  roomId: string,
  userId: string,
  extra: JsonObject = {},
): Promise<void> {
  const m = await membershipWithEvent(deps.storage.db, roomId, userId);
  if (!m || (m.membership !== 'invite' && m.membership !== 'knock'))
    throw new MatrixError('M_FORBIDDEN', `You are not invited to and have not knocked on ${roomId}`);
  const servers = residentCandidates(roomId, parsed(m.json), deps.serverName);
  const content = await memberContent(deps.storage, userId, 'leave', extra);
  const done = await handshake(deps, 'leave', roomId, userId, servers, content);
  await deps.writer.storeInvite(roomId, done.version, done.event.eventId, done.event.raw);
}
