/** Auth rules for `m.room.member` events (rule "If type is m.room.member"). */

import type { Pdu } from '../event.js';
import { serverNameOf } from '../identifiers.js';
import type { RoomVersion } from '../room-versions.js';
import {
  banLevel,
  inviteLevel,
  joinRuleOf,
  kickLevel,
  membershipOf,
  userPowerLevel,
} from './power-levels.js';
import { checkThirdPartyInvite } from './third-party-invite.js';
import { ALLOW, deny, type AuthOptions, type AuthResult, type StateLookup } from './types.js';

function defaultIsSignedBy(pdu: Pdu, serverName: string): boolean {
  const sigs = pdu.signatures[serverName];
  return sigs !== undefined && Object.keys(sigs).some((k) => k.startsWith('ed25519:'));
}

function level(n: number): string {
  return n === Infinity ? 'creator' : String(n);
}

interface Ctx {
  pdu: Pdu;
  target: string;
  lookup: StateLookup;
  v: RoomVersion;
  opts: AuthOptions;
  eventIdOf: (pdu: Pdu) => string;
}

function checkJoin({ pdu, target, lookup, v, eventIdOf }: Ctx): AuthResult {
  const create = lookup('m.room.create', '');
  if (create && pdu.prev_events.length === 1) {
    // The room creator's first join, directly after the create event. v12: only the create sender.
    const creator = v.creatorInContent ? create.content['creator'] : create.sender;
    if (creator === target && pdu.prev_events[0] === eventIdOf(create)) return ALLOW;
  }
  if (pdu.sender !== target) return deny('You cannot make another user join the room');
  const current = membershipOf(target, lookup);
  if (current === 'ban') return deny('You are banned from this room');
  const joinRule = joinRuleOf(lookup);
  if (joinRule === 'invite' || (v.knocking && joinRule === 'knock')) {
    return current === 'invite' || current === 'join' ? ALLOW : deny('You need an invite to join this room');
  }
  if (
    (v.restrictedJoins && joinRule === 'restricted') ||
    (v.knockRestricted && joinRule === 'knock_restricted')
  ) {
    if (current === 'invite' || current === 'join') return ALLOW;
    const via = pdu.content['join_authorised_via_users_server'];
    if (typeof via !== 'string') {
      return deny('Joining this restricted room requires join_authorised_via_users_server or an invite');
    }
    if (membershipOf(via, lookup) !== 'join') {
      return deny(`The authorising user ${via} is not a member of the room`);
    }
    if (userPowerLevel(via, lookup, v) < inviteLevel(lookup)) {
      return deny(`The authorising user ${via} does not have permission to invite users`);
    }
    return ALLOW;
  }
  if (joinRule === 'public') return ALLOW;
  return deny(`You cannot join a room with join rule "${joinRule}"`);
}

function checkInvite({ pdu, target, lookup, v, opts }: Ctx): AuthResult {
  const targetMembership = membershipOf(target, lookup);
  if (pdu.content['third_party_invite'] !== undefined) {
    if (opts.allowThirdPartyInvites === false) return deny('Third-party invites are not supported');
    if (targetMembership === 'ban') return deny(`${target} is banned from this room`);
    return checkThirdPartyInvite(pdu, lookup);
  }
  if (membershipOf(pdu.sender, lookup) !== 'join') return deny('You must be in the room to invite users');
  if (targetMembership === 'join') return deny(`${target} is already in the room`);
  if (targetMembership === 'ban') return deny(`${target} is banned from this room`);
  const needed = inviteLevel(lookup);
  const pl = userPowerLevel(pdu.sender, lookup, v);
  if (pl >= needed) return ALLOW;
  return deny(`Only users with power level ${needed} or higher may invite (yours is ${level(pl)})`);
}

function checkLeave({ pdu, target, lookup, v }: Ctx): AuthResult {
  const targetMembership = membershipOf(target, lookup);
  if (pdu.sender === target) {
    const ok =
      targetMembership === 'invite' ||
      targetMembership === 'join' ||
      (v.knocking && targetMembership === 'knock');
    return ok ? ALLOW : deny('You cannot leave a room you are not in or invited to');
  }
  if (membershipOf(pdu.sender, lookup) !== 'join')
    return deny('You must be in the room to kick or unban users');
  const pl = userPowerLevel(pdu.sender, lookup, v);
  if (targetMembership === 'ban') {
    const needed = banLevel(lookup);
    if (pl < needed)
      return deny(`Only users with power level ${needed} or higher may unban (yours is ${level(pl)})`);
  }
  const needed = kickLevel(lookup);
  if (pl < needed)
    return deny(`Only users with power level ${needed} or higher may kick (yours is ${level(pl)})`);
  if (userPowerLevel(target, lookup, v) >= pl) {
    return deny(`You cannot kick ${target}: their power level is not lower than yours`);
  }
  return ALLOW;
}

function checkBan({ pdu, target, lookup, v }: Ctx): AuthResult {
  if (membershipOf(pdu.sender, lookup) !== 'join') return deny('You must be in the room to ban users');
  const pl = userPowerLevel(pdu.sender, lookup, v);
  const needed = banLevel(lookup);
  if (pl < needed)
    return deny(`Only users with power level ${needed} or higher may ban (yours is ${level(pl)})`);
  if (userPowerLevel(target, lookup, v) >= pl) {
    return deny(`You cannot ban ${target}: their power level is not lower than yours`);
  }
  return ALLOW;
}

function checkKnock({ pdu, target, lookup, v }: Ctx): AuthResult {
  const joinRule = joinRuleOf(lookup);
  if (!(joinRule === 'knock' || (v.knockRestricted && joinRule === 'knock_restricted'))) {
    return deny('This room does not allow knocking');
  }
  if (pdu.sender !== target) return deny('You cannot knock on behalf of another user');
  const current = membershipOf(target, lookup);
  if (current === 'ban') return deny('You are banned from this room');
  if (current === 'invite') return deny('You are already invited to this room');
  if (current === 'join') return deny('You are already in this room');
  return ALLOW;
}

/** Rule "If type is m.room.member" (all sub-rules), for the given room version. */
export function checkMemberEvent(
  pdu: Pdu,
  lookup: StateLookup,
  v: RoomVersion,
  opts: AuthOptions,
  eventIdOf: (pdu: Pdu) => string,
): AuthResult {
  const membership = pdu.content['membership'];
  if (typeof pdu.state_key !== 'string') return deny('Membership events must have a state_key');
  if (typeof membership !== 'string') return deny('Membership events must have a membership');
  if (v.restrictedJoins && pdu.content['join_authorised_via_users_server'] !== undefined) {
    const via = pdu.content['join_authorised_via_users_server'];
    const server = typeof via === 'string' ? serverNameOf(via) : undefined;
    const isSignedBy = opts.isSignedBy ?? defaultIsSignedBy;
    if (server === undefined || !isSignedBy(pdu, server)) {
      return deny('The join is not signed by the server of join_authorised_via_users_server');
    }
  }
  const ctx: Ctx = { pdu, target: pdu.state_key, lookup, v, opts, eventIdOf };
  switch (membership) {
    case 'join':
      return checkJoin(ctx);
    case 'invite':
      return checkInvite(ctx);
    case 'leave':
      return checkLeave(ctx);
    case 'ban':
      return checkBan(ctx);
    case 'knock':
      if (v.knocking) return checkKnock(ctx);
      break;
  }
  return deny(`Unknown membership "${membership}"`);
}
