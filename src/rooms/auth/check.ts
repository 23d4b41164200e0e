/**
 * The authorisation rules of every room version (rooms/fragments/v1-auth-rules.md, v3-auth-rules.md,
 * v8-auth-rules.md and the per-version pages v6, v7, v10, v11, v12), evaluated against an auth state.
 */

import type { Pdu } from '../event.js';
import { roomIdFromCreateEventId } from '../event.js';
import { computeEventId } from '../hashing.js';
import { serverNameOf } from '../identifiers.js';
import { getRoomVersion, isKnownRoomVersion, type RoomVersion } from '../room-versions.js';
import { checkMemberEvent } from './membership.js';
import { checkPowerLevelsEvent } from './power-levels-change.js';
import {
  inviteLevel,
  isAuthValidUserId,
  membershipOf,
  redactLevel,
  requiredPowerLevel,
  userPowerLevel,
} from './power-levels.js';
import { ALLOW, deny, type AuthOptions, type AuthResult, type StateLookup } from './types.js';

function checkCreateEvent(pdu: Pdu, v: RoomVersion): AuthResult {
  if (pdu.prev_events.length > 0) return deny('The m.room.create event must not have prev_events');
  if (v.roomIdFromCreateEvent) {
    if (pdu.room_id !== undefined)
      return deny(`In room version ${v.id} the m.room.create event must not have a room_id`);
  } else {
    if (typeof pdu.room_id !== 'string' || serverNameOf(pdu.room_id) !== serverNameOf(pdu.sender)) {
      return deny("The room ID's server does not match the creator's server");
    }
  }
  const roomVersion = pdu.content['room_version'];
  if (roomVersion !== undefined && (typeof roomVersion !== 'string' || !isKnownRoomVersion(roomVersion))) {
    return deny(`Unsupported room version ${JSON.stringify(roomVersion)}`);
  }
  if (v.creatorInContent && pdu.content['creator'] === undefined) {
    return deny('The m.room.create event must have content.creator');
  }
  if (v.privilegedCreators && pdu.content['additional_creators'] !== undefined) {
    const extra = pdu.content['additional_creators'];
    if (!Array.isArray(extra) || !extra.every((u) => typeof u === 'string' && isAuthValidUserId(u))) {
      return deny('additional_creators must be a list of valid user IDs');
    }
  }
  return ALLOW;
}

function checkRedactionV1(pdu: Pdu, lookup: StateLookup, v: RoomVersion): AuthResult {
  if (userPowerLevel(pdu.sender, lookup, v) >= redactLevel(lookup)) return ALLOW;
  const redacted = typeof pdu.redacts === 'string' ? serverNameOf(pdu.redacts) : undefined;
  const own = typeof pdu.event_id === 'string' ? serverNameOf(pdu.event_id) : undefined;
  if (redacted !== undefined && redacted === own) return ALLOW;
  return deny(
    `Only users with power level ${redactLevel(lookup)} or higher may redact other servers' events`,
  );
}

/**
 * Whether `pdu` is allowed by the authorisation rules of `version`, given the state before it (`lookup`).
 *
 * The lookup must provide the auth state: for room version 12 that includes the `m.room.create` event,
 * even though it is not listed in `auth_events`. Checks that need more than the state are left to the
 * caller: signatures by the sender's server, whether auth events were rejected, and the `auth_events`
 * list itself (see `checkAuthEvents`).
 */
export function checkEventAuth(
  pdu: Pdu,
  lookup: StateLookup,
  version: string | RoomVersion,
  opts: AuthOptions = {},
): AuthResult {
  const v = getRoomVersion(version);
  const eventIdOf = opts.eventIdOf ?? ((e: Pdu) => computeEventId(e, v));

  if (pdu.type === 'm.room.create') return checkCreateEvent(pdu, v);

  const create = lookup('m.room.create', '');
  if (!create) return deny('The room has no m.room.create event');
  if (v.roomIdFromCreateEvent) {
    if (pdu.room_id !== roomIdFromCreateEventId(eventIdOf(create))) {
      return deny("The event's room ID does not match the room's create event");
    }
  }
  if (create.content['m.federate'] === false && serverNameOf(pdu.sender) !== serverNameOf(create.sender)) {
    return deny('This room does not allow users from other servers');
  }

  if (v.aliasesAuthRule && pdu.type === 'm.room.aliases') {
    if (typeof pdu.state_key !== 'string') return deny('m.room.aliases events must have a state_key');
    if (pdu.state_key !== serverNameOf(pdu.sender)) {
      return deny("The state_key of m.room.aliases must be the sender's server name");
    }
    return ALLOW;
  }

  if (pdu.type === 'm.room.member') return checkMemberEvent(pdu, lookup, v, opts, eventIdOf);

  if (membershipOf(pdu.sender, lookup) !== 'join') return deny('You are not a member of this room');

  const senderLevel = userPowerLevel(pdu.sender, lookup, v);
  if (pdu.type === 'm.room.third_party_invite') {
    const needed = inviteLevel(lookup);
    return senderLevel >= needed
      ? ALLOW
      : deny(`Only users with power level ${needed} or higher may send third-party invites`);
  }

  const isState = typeof pdu.state_key === 'string';
  const needed = requiredPowerLevel(pdu.type, isState, lookup);
  if (needed > senderLevel) {
    const fmt = senderLevel === Infinity ? 'creator' : String(senderLevel);
    return deny(
      `Only users with power level ${needed} or higher may send ${pdu.type} events (yours is ${fmt})`,
    );
  }

  if (isState && pdu.state_key?.startsWith('@') && pdu.state_key !== pdu.sender) {
    return deny('State keys starting with @ are reserved for the user with that ID');
  }

  if (pdu.type === 'm.room.power_levels') return checkPowerLevelsEvent(pdu, lookup, v);

  if (v.redactionAuthRule && pdu.type === 'm.room.redaction') return checkRedactionV1(pdu, lookup, v);

  return ALLOW;
}

/**
 * "Handling redactions" (v3+): whether a valid redaction should be applied to the event it targets:
 * the redacter has the redact level, or is on the same server as the original sender.
 */
export function redactionAllowed(
  redaction: Pick<Pdu, 'sender'>,
  original: Pick<Pdu, 'sender'>,
  lookup: StateLookup,
  version: string | RoomVersion,
): boolean {
  if (userPowerLevel(redaction.sender, lookup, version) >= redactLevel(lookup)) return true;
  const a = serverNameOf(redaction.sender);
  return a !== undefined && a === serverNameOf(original.sender);
}
