/**
 * The resident side of the federation space hierarchy (GET /_matrix/federation/v1/hierarchy/{roomId}), as Synapse's
 * get_federation_hierarchy answers it: the room's summary with its m.space.child events, then the summaries of the
 * children this server is in and the requesting server may see, not recursively; the children it may not see are
 * named in `inaccessible_children`, the ones this server is not in are left out. Accessibility is judged for a
 * server (Synapse's _is_local_room_accessible with an origin), the requesting server filters for its user.
 */
import { aclAllows, serversInRoom } from '../federation/room-access.js';
import { lookupIn, type RoomHead } from '../input/room-head.js';
import type { RoomWriter } from '../input/room-writer.js';
import { joinRuleOf } from '../rooms/auth/power-levels.js';
import { serverNameOf } from '../rooms/identifiers.js';
import { MatrixError } from '../api/errors.js';
import { childEvents, MAX_ROOMS, type HierarchyRoom } from './hierarchy.js';
import {
  allowedRoomIds,
  fullSummary,
  isWorldReadable,
  roomTypeOf,
  type FullRoomSummary,
} from './room-summary.js';

export interface FederationHierarchy {
  room: HierarchyRoom;
  children: FullRoomSummary[];
  inaccessible_children: string[];
}

/** Whether a server with a joined or invited member of the room's current state is `server`. */
function hasMemberOf(head: RoomHead, server: string): boolean {
  if (serversInRoom(head).has(server)) return true;
  for (const e of head.state.values()) {
    if (e.pdu.type !== 'm.room.member' || e.pdu.content.membership !== 'invite') continue;
    if (e.pdu.state_key !== undefined && serverNameOf(e.pdu.state_key) === server) return true;
  }
  return false;
}

/**
 * Whether `server` could peek or join the room: the ACL lets it in, and the join rule is public or knockable, the
 * history is world-readable, one of its users is joined or invited, or one of its users is joined to a room that
 * a restricted join rule allows.
 */
export async function serverMaySee(writer: RoomWriter, head: RoomHead, server: string): Promise<boolean> {
  if (!aclAllows(head, server)) return false;
  const rule = joinRuleOf(lookupIn(head.state));
  if (rule === 'public' || rule === 'knock' || rule === 'knock_restricted') return true;
  if (isWorldReadable(head) || hasMemberOf(head, server)) return true;
  if (rule === 'restricted') {
    for (const allowed of allowedRoomIds(head)) {
      const other = await writer.head(allowed);
      if (other && serversInRoom(other).has(server)) return true;
    }
  }
  return false;
}

/** A room this server is joined to (its head), or undefined. */
async function joinedHead(
  writer: RoomWriter,
  serverName: string,
  roomId: string,
): Promise<RoomHead | undefined> {
  const head = await writer.head(roomId);
  return head && serversInRoom(head).has(serverName) ? head : undefined;
}

export async function federationHierarchy(
  deps: { writer: RoomWriter; serverName: string },
  roomId: string,
  origin: string,
  suggestedOnly: boolean,
): Promise<FederationHierarchy> {
  const head = await joinedHead(deps.writer, deps.serverName, roomId);
  if (!head || !(await serverMaySee(deps.writer, head, origin)))
    throw new MatrixError('M_NOT_FOUND', `Unknown room: ${roomId}`);
  const state = roomTypeOf(head) === 'm.space' ? childEvents(head, suggestedOnly) : [];
  const children: FullRoomSummary[] = [];
  const inaccessible: string[] = [];
  for (const child of state.slice(0, MAX_ROOMS)) {
    const childHead = await joinedHead(deps.writer, deps.serverName, child.state_key);
    if (!childHead) continue;
    if (await serverMaySee(deps.writer, childHead, origin)) children.push(fullSummary(childHead));
    else inaccessible.push(child.state_key);
  }
  return {
    room: { ...fullSummary(head), children_state: state },
    children,
    inaccessible_children: inaccessible,
  };
}
