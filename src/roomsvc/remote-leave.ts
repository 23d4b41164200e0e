/**
 * Leaving a room this server is not in (server-server API "Leaving Rooms (Rejecting Invites)"): a local user's
 * invite received over federation is rejected, or their knock rescinded, with make_leave and send_leave through the
 * servers the invite or knock names (the inviting server, the senders of its stripped state, the room id's server).
 * The leave then replaces the membership, so /sync moves the room to `rooms.leave`. When no server takes the leave,
 * it is made here only (out of band: citing the invite or knock, sent to nobody) so the user is not stuck.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../api/errors.js';
import { buildEvent } from '../rooms/build.js';
import type { JsonObject } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import { findRoomVersion, type RoomVersion } from '../rooms/room-versions.js';
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
  let done;
  try {
    done = await handshake(deps, 'leave', roomId, userId, servers, content);
  } catch (err) {
    // No resident server took the leave (all unreachable, or they left the room): reject here only, so the user
    // is not stuck with the invite or knock (as Synapse does). The room never sees this leave.
    const version = findRoomVersion(m.roomVersion);
    if (!(err instanceof MatrixError) || !version) throw err;
    const event = parsed(m.json);
    const local = outOfBandLeave(deps, version, roomId, userId, m.eventId, event, content);
    await deps.writer.storeInvite(roomId, version, local.eventId, local.pdu);
    return;
  }
  await deps.writer.storeInvite(roomId, done.version, done.event.eventId, done.event.raw);
}

/** A leave after the invite (knock), citing only it, signed by this server and sent to nobody. */
function outOfBandLeave(
  deps: Pick<RemoteJoinDeps, 'serverName' | 'signingKey'>,
  version: RoomVersion,
  roomId: string,
  userId: string,
  previousId: string,
  previous: JsonObject,
  content: JsonObject,
) {
  const legacy = version.eventIdFormat === 'v1';
  const depth = typeof previous.depth === 'number' ? previous.depth : 0;
  return buildEvent(
    {
      type: 'm.room.member',
      state_key: userId,
      sender: userId,
      room_id: roomId,
      content,
      prev_events: [previousId],
      auth_events: [previousId],
      depth: Math.min(Number.MAX_SAFE_INTEGER, depth + 1),
      origin_server_ts: Date.now(),
      ...(legacy ? { event_id: `$${randomBytes(18).toString('base64url')}:${deps.serverName}` } : {}),
    },
    {
      roomVersion: version,
      serverName: deps.serverName,
      keyId: deps.signingKey.keyId,
      seed: deps.signingKey.seed,
    },
  );
}
