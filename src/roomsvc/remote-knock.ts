/**
 * Knocking on a room this server is not in (server-server API "Knocking upon a room"): make_knock and send_knock
 * with each candidate server in turn, then the knock stored as the user's membership, with the room's stripped state
 * from `knock_room_state` (entries not properly signed, or of another room, are dropped), so /sync shows it under
 * `rooms.knock`.
 */
import { checkReceivedPdu } from '../federation/pdu-checks.js';
import type { JsonObject } from '../rooms/event.js';
import type { RoomVersion } from '../rooms/room-versions.js';
import { memberContent } from './create-room.js';
import { handshake, type RemoteJoinDeps } from './remote-membership.js';

/** A stripped state event (type, state_key, content, sender), or undefined when the object is not one. */
function strippedEvent(e: JsonObject): JsonObject | undefined {
  const { type, state_key: stateKey, content, sender } = e;
  if (typeof type !== 'string' || typeof stateKey !== 'string' || typeof sender !== 'string')
    return undefined;
  if (typeof content !== 'object' || content === null || Array.isArray(content)) return undefined;
  return { type, state_key: stateKey, content, sender };
}

/** The answer's `knock_room_state` as stripped state events (type, state_key, content, sender). */
export async function strippedKnockState(
  deps: Pick<RemoteJoinDeps, 'keyRing'>,
  roomId: string,
  version: RoomVersion,
  answer: unknown,
): Promise<JsonObject[]> {
  const given = answer as { knock_room_state?: unknown; knock_state_events?: unknown } | undefined;
  // `knock_state_events`: the name of servers before spec v1.12 (Synapse 1.67).
  const list = given?.knock_room_state ?? given?.knock_state_events;
  const out: JsonObject[] = [];
  for (const e of Array.isArray(list) ? list : []) {
    if (typeof e !== 'object' || e === null || Array.isArray(e)) continue;
    const obj = e as JsonObject;
    if (!('signatures' in obj) && !version.roomIdFromCreateEvent) {
      // Older servers send stripped state (unsigned): shown as the room's preview, as before spec v1.16.
      const stripped = strippedEvent(obj);
      if (stripped) out.push(stripped);
      continue;
    }
    const c = await checkReceivedPdu(deps.keyRing, obj, version);
    if (!c.ok || c.redacted || typeof c.raw.state_key !== 'string') continue;
    // Room version 12 create events carry no room_id: the room id is derived from their id.
    if (c.raw.room_id !== undefined && c.raw.room_id !== roomId) continue;
    out.push({ type: c.raw.type, state_key: c.raw.state_key, content: c.raw.content, sender: c.raw.sender });
  }
  return out;
}

/** Knocks on `roomId` for `userId` through the first of `servers` that accepts it. */
export async function knockOverFederation(
  deps: RemoteJoinDeps,
  roomId: string,
  userId: string,
  servers: readonly string[],
  extra: JsonObject = {},
): Promise<void> {
  const content = await memberContent(deps.storage, userId, 'knock', extra);
  const done = await handshake(deps, 'knock', roomId, userId, servers, content);
  const stripped = await strippedKnockState(deps, roomId, done.version, done.answer);
  await deps.writer.storeInvite(roomId, done.version, done.event.eventId, {
    ...done.event.raw,
    unsigned: { knock_room_state: stripped },
  });
}
