/** Membership changes requested by local users, including restricted joins (join_authorised_via_users_server). */
import { MatrixError } from '../api/errors.js';
import type { RoomWriter } from '../input/room-writer.js';
import { lookupIn } from '../input/room-head.js';
import { membershipOf } from '../rooms/auth/power-levels.js';
import type { JsonObject } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import type { RoomHead } from '../input/room-head.js';
import type { Storage } from '../storage/db.js';
import { serversInRoom } from '../federation/room-access.js';
import { memberContent } from './create-room.js';
import {
  inviteOverFederation,
  joinAuthorisedElsewhere,
  joinOverFederation,
  type RemoteJoinDeps,
} from './remote-join.js';
import { knockOverFederation } from './remote-knock.js';
import { leaveOverFederation, pendingRemoteMembership } from './remote-leave.js';
import { authoriseRestrictedJoin, needsAuthoriser } from './restricted-join.js';

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

function federated(deps: MembershipDeps): RemoteJoinDeps | undefined {
  if (!deps.federation) return undefined;
  return { ...deps.federation, storage: deps.storage, writer: deps.writer, serverName: deps.serverName };
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
    const fed = federated(deps);
    if (fed && servers.length)
      return joinOverFederation(fed, roomId, userId, servers, reason ? { reason } : {});
  }
  const head = await headOrNotFound(deps, roomId);
  const lookup = lookupIn(head.state);
  if (guest && lookup('m.room.guest_access', '')?.content.guest_access !== 'can_join')
    throw new MatrixError('M_GUEST_ACCESS_FORBIDDEN', 'Guest access is not allowed in this room');
  const extra: JsonObject = reason ? { reason } : {};
  if (guest) extra.kind = 'guest';
  if (needsAuthoriser(head, userId)) {
    const outcome = await authoriseRestrictedJoin(deps, head, userId);
    const fed = federated(deps);
    if (!outcome.ok && outcome.errcode !== 'M_FORBIDDEN' && fed && !guest) {
      // Another server in the room may be able to authorise it.
      const servers = [...new Set([...via, ...serversInRoom(head)])].filter((s) => s !== deps.serverName);
      if (servers.length) return joinAuthorisedElsewhere(fed, roomId, userId, servers, extra);
    }
    if (!outcome.ok)
      throw new MatrixError(
        'M_FORBIDDEN',
        outcome.errcode === 'M_UNABLE_TO_AUTHORISE_JOIN'
          ? 'You are not a member of any room that grants access to this room'
          : outcome.reason,
      );
    extra.join_authorised_via_users_server = outcome.authoriser;
  }
  const content = await memberContent(deps.storage, userId, 'join', extra);
  await deps.writer.send(roomId, { type: 'm.room.member', state_key: userId, sender: userId, content });
  return roomId;
}

/**
 * Knocks on the room for `userId`: through this server's writer when it is in the room, else over federation
 * through the servers named, then the room id's server.
 */
export async function knock(
  deps: MembershipDeps,
  roomId: string,
  userId: string,
  extra: JsonObject = {},
  via: readonly string[] = [],
): Promise<void> {
  const known = await deps.writer.head(roomId);
  const fed = federated(deps);
  if (fed && (!known || !serverJoined(known, deps.serverName))) {
    const servers = [...new Set([...via, serverNameOf(roomId) ?? ''])].filter(
      (s) => s && s !== deps.serverName,
    );
    if (servers.length) return knockOverFederation(fed, roomId, userId, servers, extra);
  }
  await changeMembership(deps, roomId, userId, userId, 'knock', extra);
}

export async function changeMembership(
  deps: MembershipDeps,
  roomId: string,
  sender: string,
  target: string,
  membership: 'invite' | 'leave' | 'ban' | 'knock',
  extra: JsonObject = {},
): Promise<void> {
  const fed = federated(deps);
  // Rejecting an invite (rescinding a knock) known only from federation: through a resident server.
  if (fed && membership === 'leave' && sender === target) {
    const known = await deps.writer.head(roomId);
    if (
      (!known || !serverJoined(known, deps.serverName)) &&
      (await pendingRemoteMembership(fed, roomId, target))
    )
      return leaveOverFederation(fed, roomId, target, extra);
  }
  await headOrNotFound(deps, roomId);
  const content = await memberContent(deps.storage, target, membership, extra);
  const server = serverNameOf(target);
  if (membership === 'invite' && fed && server && server !== deps.serverName) {
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
