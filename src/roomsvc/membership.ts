/** Membership changes requested by local users, including restricted joins (join_authorised_via_users_server). */
import { MatrixError } from '../api/errors.js';
import type { RoomWriter } from '../input/room-writer.js';
import { lookupIn } from '../input/room-head.js';
import { inviteLevel, joinRuleOf, membershipOf, userPowerLevel } from '../rooms/auth/power-levels.js';
import type { JsonObject } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import type { RoomHead } from '../input/room-head.js';
import type { Storage } from '../storage/db.js';
import { memberContent } from './create-room.js';
import { inviteOverFederation, joinOverFederation, type RemoteJoinDeps } from './remote-join.js';

export interface MembershipDeps {
  storage: Storage;
  writer: RoomWriter;
  serverName: string;
  /** Joins to rooms this server is not in go over federation through these. */
  federation?: Pick<RemoteJoinDeps, 'client' | 'keyRing' | 'signingKey'> | undefined;
}

/** The sender of the user's pending invite to the room, if any (its server can be asked to join through). */
async function pendingInviteSender(
  deps: MembershipDeps,
  roomId: string,
  userId: string,
): Promise<string | undefined> {
  const row = await deps.storage.db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .innerJoin('events as e', 'e.event_nid', 'm.event_nid')
    .select('e.sender')
    .where('r.room_id', '=', roomId)
    .where('m.user_id', '=', userId)
    .where('m.membership', '=', 'invite')
    .executeTakeFirst();
  return row?.sender;
}

/** Whether a user of `serverName` is joined to the room's current state. */
function serverJoined(head: RoomHead, serverName: string): boolean {
  for (const e of head.state.values())
    if (
      e.pdu.type === 'm.room.member' &&
      e.pdu.content.membership === 'join' &&
      e.pdu.state_key?.endsWith(`:${serverName}`)
    )
      return true;
  return false;
}

/** Resolves a room id or a local alias to a room id. */
export async function resolveRoom(storage: Storage, roomIdOrAlias: string): Promise<string> {
  if (roomIdOrAlias.startsWith('!')) return roomIdOrAlias;
  if (!roomIdOrAlias.startsWith('#'))
    throw new MatrixError('M_INVALID_PARAM', 'Expected a room id or a room alias');
  const row = await storage.db
    .selectFrom('room_aliases')
    .select('room_id')
    .where('alias', '=', roomIdOrAlias)
    .executeTakeFirst();
  if (!row) throw new MatrixError('M_NOT_FOUND', `Room alias ${roomIdOrAlias} not found`);
  return row.room_id;
}

async function headOrNotFound(deps: MembershipDeps, roomId: string) {
  const head = await deps.writer.head(roomId);
  if (!head) throw new MatrixError('M_NOT_FOUND', 'Unknown room: this server is not in the room');
  return head;
}

/**
 * Joins `userId` to the room. A guest (Guest Access module) may join only while `m.room.guest_access` is `can_join`;
 * its member event carries `kind: guest`, as Synapse writes it.
 */
export async function join(
  deps: MembershipDeps,
  roomId: string,
  userId: string,
  reason?: string,
  guest = false,
  via: readonly string[] = [],
): Promise<string> {
  const known = await deps.writer.head(roomId);
  if (deps.federation && !guest && (!known || !serverJoined(known, deps.serverName))) {
    // This server is not in the room: join through the servers named, then the room id's server.
    const inviter = await pendingInviteSender(deps, roomId, userId);
    const servers = [
      ...new Set([...via, serverNameOf(roomId) ?? '', serverNameOf(inviter ?? '') ?? '']),
    ].filter((s) => s && s !== deps.serverName);
    if (servers.length) {
      const fed = {
        ...deps.federation,
        storage: deps.storage,
        writer: deps.writer,
        serverName: deps.serverName,
      };
      return joinOverFederation(fed, roomId, userId, servers, reason ? { reason } : {});
    }
  }
  const head = await headOrNotFound(deps, roomId);
  const lookup = lookupIn(head.state);
  if (guest && lookup('m.room.guest_access', '')?.content.guest_access !== 'can_join')
    throw new MatrixError('M_GUEST_ACCESS_FORBIDDEN', 'Guest access is not allowed in this room');
  const extra: JsonObject = reason ? { reason } : {};
  if (guest) extra.kind = 'guest';
  const rule = joinRuleOf(lookup);
  const current = membershipOf(userId, lookup);
  if ((rule === 'restricted' || rule === 'knock_restricted') && current !== 'invite' && current !== 'join') {
    extra.join_authorised_via_users_server = await restrictedJoinAuthoriser(deps, head, userId);
  }
  const content = await memberContent(deps.storage, userId, 'join', extra);
  await deps.writer.send(roomId, { type: 'm.room.member', state_key: userId, sender: userId, content });
  return roomId;
}

/** A local joined user who may invite, when `userId` is joined to one of the rooms the join rule allows. */
async function restrictedJoinAuthoriser(
  deps: MembershipDeps,
  head: Awaited<ReturnType<typeof headOrNotFound>>,
  userId: string,
): Promise<string> {
  const lookup = lookupIn(head.state);
  const rules = lookup('m.room.join_rules', '')?.content;
  const allow = Array.isArray(rules?.allow) ? (rules.allow as unknown[]) : [];
  const allowedRooms = allow
    .filter(
      (a): a is JsonObject =>
        typeof a === 'object' && a !== null && (a as JsonObject).type === 'm.room_membership',
    )
    .map((a) => a.room_id)
    .filter((r): r is string => typeof r === 'string');
  let inAllowed = false;
  for (const r of allowedRooms) {
    const h = await deps.writer.head(r);
    if (h && membershipOf(userId, lookupIn(h.state)) === 'join') inAllowed = true;
  }
  if (!inAllowed)
    throw new MatrixError('M_FORBIDDEN', 'You are not a member of any room that grants access to this room');
  const needed = inviteLevel(lookup);
  for (const entry of head.state.values()) {
    const pdu = entry.pdu;
    if (pdu.type !== 'm.room.member' || pdu.content.membership !== 'join' || !pdu.state_key) continue;
    if (!pdu.state_key.endsWith(`:${deps.serverName}`)) continue;
    if (userPowerLevel(pdu.state_key, lookup, head.version) >= needed) return pdu.state_key;
  }
  throw new MatrixError(
    'M_FORBIDDEN',
    'No user on this server can authorise your join to this restricted room',
  );
}

export async function changeMembership(
  deps: MembershipDeps,
  roomId: string,
  sender: string,
  target: string,
  membership: 'invite' | 'leave' | 'ban' | 'knock',
  extra: JsonObject = {},
): Promise<void> {
  await headOrNotFound(deps, roomId);
  const content = await memberContent(deps.storage, target, membership, extra);
  const server = serverNameOf(target);
  if (membership === 'invite' && deps.federation && server && server !== deps.serverName) {
    const fed = {
      ...deps.federation,
      storage: deps.storage,
      writer: deps.writer,
      serverName: deps.serverName,
    };
    await inviteOverFederation(fed, roomId, sender, target, content);
    return;
  }
  await deps.writer.send(roomId, { type: 'm.room.member', state_key: target, sender, content });
}

/** Unban is a leave by someone else that is only valid for a banned target. */
export async function unban(
  deps: MembershipDeps,
  roomId: string,
  sender: string,
  target: string,
  extra: JsonObject,
): Promise<void> {
  const head = await headOrNotFound(deps, roomId);
  if (membershipOf(target, lookupIn(head.state)) !== 'ban')
    throw new MatrixError('M_FORBIDDEN', `${target} is not banned`);
  await deps.writer.send(roomId, {
    type: 'm.room.member',
    state_key: target,
    sender,
    content: { membership: 'leave', ...extra },
  });
}

/** Kick is a leave by someone else that is only valid for a joined, invited or knocking target. */
export async function kick(
  deps: MembershipDeps,
  roomId: string,
  sender: string,
  target: string,
  extra: JsonObject,
): Promise<void> {
  const head = await headOrNotFound(deps, roomId);
  const m = membershipOf(target, lookupIn(head.state));
  if (m !== 'join' && m !== 'invite' && m !== 'knock')
    throw new MatrixError('M_FORBIDDEN', `${target} is not in the room`);
  await deps.writer.send(roomId, {
    type: 'm.room.member',
    state_key: target,
    sender,
    content: { membership: 'leave', ...extra },
  });
}
