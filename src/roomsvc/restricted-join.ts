/**
 * Restricted joins (client-server API "Restricted rooms", server-server API "Restricted rooms"): a join to a room
 * whose join rule is `restricted` (or `knock_restricted`) by a user neither invited nor joined is allowed when the
 * user is joined to one of the rooms the rule's `allow` conditions name, and is authorised by a joined user of this
 * server who can invite (`join_authorised_via_users_server`). Used for local joins and as the resident server of
 * make_join/send_join.
 */
import type { RoomHead } from '../input/room-head.js';
import { lookupIn } from '../input/room-head.js';
import type { RoomWriter } from '../input/room-writer.js';
import { inviteLevel, joinRuleOf, membershipOf, userPowerLevel } from '../rooms/auth/power-levels.js';
import type { JsonObject } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';

export type RestrictedRefusal = 'M_FORBIDDEN' | 'M_UNABLE_TO_AUTHORISE_JOIN' | 'M_UNABLE_TO_GRANT_JOIN';

export type RestrictedOutcome =
  { ok: true; authoriser: string } | { ok: false; errcode: RestrictedRefusal; reason: string };

export interface RestrictedDeps {
  writer: Pick<RoomWriter, 'head'>;
  serverName: string;
}

/** Whether a join of `userId` needs an authorising user: a restricted join rule, and neither invited nor joined. */
export function needsAuthoriser(head: RoomHead, userId: string): boolean {
  const lookup = lookupIn(head.state);
  const rule = joinRuleOf(lookup);
  const restricted =
    (rule === 'restricted' && head.version.restrictedJoins) ||
    (rule === 'knock_restricted' && head.version.knockRestricted);
  const current = membershipOf(userId, lookup);
  return restricted && current !== 'invite' && current !== 'join';
}

/** The room ids of the `m.room_membership` conditions of the join rule. */
function allowedRooms(head: RoomHead): string[] {
  const rules = lookupIn(head.state)('m.room.join_rules', '')?.content;
  const allow = Array.isArray(rules?.allow) ? (rules.allow as unknown[]) : [];
  return allow
    .filter(
      (a): a is JsonObject =>
        typeof a === 'object' && a !== null && (a as JsonObject).type === 'm.room_membership',
    )
    .map((a) => a.room_id)
    .filter((r): r is string => typeof r === 'string');
}

/** Whether `userId` is joined to an allowed room, as far as this server knows (`unknown`: it is in none of them). */
async function allowedMembership(
  deps: RestrictedDeps,
  head: RoomHead,
  userId: string,
): Promise<'member' | 'not-member' | 'unknown'> {
  let known = false;
  for (const r of allowedRooms(head)) {
    const h = await deps.writer.head(r);
    if (!h) continue;
    known = true;
    if (membershipOf(userId, lookupIn(h.state)) === 'join') return 'member';
  }
  return known ? 'not-member' : 'unknown';
}

/** Whether `userId` is a local user joined to the room with the power to invite. */
export function canAuthorise(deps: RestrictedDeps, head: RoomHead, userId: string): boolean {
  const lookup = lookupIn(head.state);
  return (
    serverNameOf(userId) === deps.serverName &&
    membershipOf(userId, lookup) === 'join' &&
    userPowerLevel(userId, lookup, head.version) >= inviteLevel(lookup)
  );
}

/**
 * Checks the allow conditions for `userId` and picks (or, with `authoriser`, checks) a local user to authorise the
 * join. Refusals follow the server-server API: M_UNABLE_TO_AUTHORISE_JOIN when this server knows none of the allowed
 * rooms, M_FORBIDDEN when the user is in none of them, M_UNABLE_TO_GRANT_JOIN when no local user may invite.
 */
export async function authoriseRestrictedJoin(
  deps: RestrictedDeps,
  head: RoomHead,
  userId: string,
  authoriser?: string,
): Promise<RestrictedOutcome> {
  const member = await allowedMembership(deps, head, userId);
  if (member === 'unknown')
    return {
      ok: false,
      errcode: 'M_UNABLE_TO_AUTHORISE_JOIN',
      reason: 'This server is not in any of the rooms that grant access to this room',
    };
  if (member === 'not-member')
    return {
      ok: false,
      errcode: 'M_FORBIDDEN',
      reason: 'You are not a member of any room that grants access to this room',
    };
  if (authoriser !== undefined)
    return canAuthorise(deps, head, authoriser)
      ? { ok: true, authoriser }
      : {
          ok: false,
          errcode: 'M_UNABLE_TO_GRANT_JOIN',
          reason: `${authoriser} cannot authorise joins to this room`,
        };
  for (const entry of head.state.values()) {
    const key = entry.pdu.state_key;
    if (entry.pdu.type !== 'm.room.member' || !key) continue;
    if (canAuthorise(deps, head, key)) return { ok: true, authoriser: key };
  }
  return {
    ok: false,
    errcode: 'M_UNABLE_TO_GRANT_JOIN',
    reason: 'No user on this server can authorise your join to this restricted room',
  };
}
