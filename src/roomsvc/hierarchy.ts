/**
 * The space hierarchy (GET /_matrix/client/v1/rooms/{roomId}/hierarchy), following Synapse's RoomSummaryHandler:
 * a depth-first walk over valid m.space.child events (non-empty `via`) of rooms whose type is m.space, returning
 * the rooms the requester may see. Pagination keeps the remaining queue in a short-lived session named by an
 * opaque token; the token is only valid for the same requester, room, suggested_only and max_depth. A room this
 * server is not in (the root, or a child) is asked over federation from the servers of its link's `via` (the root:
 * its room id's server); a child that is not a space is described by its parent's answer without another request.
 * Remote rooms the requester may not see, and the children the remote calls inaccessible, are left out.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../api/errors.js';
import type { RemoteRoomSummary } from '../federation/remote-directory.js';
import type { RemoteHierarchy } from '../federation/remote-hierarchy.js';
import { serversInRoom } from '../federation/room-access.js';
import { lookupIn, type RoomHead } from '../input/room-head.js';
import type { RoomWriter } from '../input/room-writer.js';
import { joinRuleOf, membershipOf } from '../rooms/auth/power-levels.js';
import type { JsonObject } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import {
  allowedRoomIds,
  fullSummary,
  isWorldReadable,
  roomTypeOf,
  type FullRoomSummary,
} from './room-summary.js';

export const MAX_ROOMS = 50;
const SESSION_TTL_MS = 5 * 60_000;
const MAX_SESSIONS = 10_000;

export interface HierarchyRequest {
  userId: string;
  roomId: string;
  suggestedOnly: boolean;
  maxDepth?: number | undefined;
  limit?: number | undefined;
  from?: string | undefined;
}

export interface StrippedChild {
  type: string;
  state_key: string;
  content: JsonObject;
  sender: string;
  origin_server_ts: number;
}

export type HierarchyRoom = (FullRoomSummary | RemoteRoomSummary) & { children_state: StrippedChild[] };

interface QueueEntry {
  roomId: string;
  depth: number;
  /** The servers to ask when this server is not in the room. */
  via: string[];
  /** The room's summary in its parent's federation answer. */
  remote?: RemoteRoomSummary | undefined;
}

/** Federation for rooms this server is not in. */
export interface HierarchyFederation {
  serverName: string;
  hierarchy: RemoteHierarchy;
}

const LISTED_JOIN_RULES = new Set(['public', 'knock', 'knock_restricted']);

interface Session {
  userId: string;
  roomId: string;
  suggestedOnly: boolean;
  maxDepth: number | undefined;
  queue: QueueEntry[];
  processed: string[];
  expires: number;
}

/** `via` must be a non-empty list of strings for a child (or parent) link to count. */
function hasValidVia(content: JsonObject): boolean {
  const via = content.via;
  return Array.isArray(via) && via.length > 0 && via.every((v) => typeof v === 'string');
}

/** Synapse's _child_events_comparison_key: valid `order` first (by order), then timestamp, then room id. */
function orderOf(content: JsonObject): string | undefined {
  const order = content.order;
  if (typeof order !== 'string' || order.length > 50) return undefined;
  for (let i = 0; i < order.length; i++) {
    const c = order.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return undefined;
  }
  return order;
}

export function compareChildren(a: StrippedChild, b: StrippedChild): number {
  const oa = orderOf(a.content);
  const ob = orderOf(b.content);
  if (oa !== undefined && ob === undefined) return -1;
  if (oa === undefined && ob !== undefined) return 1;
  if (oa !== undefined && ob !== undefined && oa !== ob) return oa < ob ? -1 : 1;
  if (a.origin_server_ts !== b.origin_server_ts) return a.origin_server_ts - b.origin_server_ts;
  return a.state_key < b.state_key ? -1 : a.state_key > b.state_key ? 1 : 0;
}

/** The valid m.space.child events of a room, stripped, in the spec's order. */
export function childEvents(head: RoomHead, suggestedOnly: boolean): StrippedChild[] {
  const out: StrippedChild[] = [];
  for (const e of head.state.values()) {
    if (e.pdu.type !== 'm.space.child' || !hasValidVia(e.pdu.content)) continue;
    if (suggestedOnly && e.pdu.content.suggested !== true) continue;
    out.push({
      type: e.pdu.type,
      state_key: e.pdu.state_key ?? '',
      content: e.pdu.content,
      sender: e.pdu.sender,
      origin_server_ts: e.pdu.origin_server_ts,
    });
  }
  return out.sort(compareChildren);
}

function viaOf(child: StrippedChild): string[] {
  const via = child.content.via;
  return Array.isArray(via) ? via.filter((v): v is string => typeof v === 'string') : [];
}

export class SpaceHierarchy {
  #sessions = new Map<string, Session>();

  constructor(
    private readonly writer: RoomWriter,
    private readonly federation?: HierarchyFederation | undefined,
  ) {}

  /**
   * Synapse's _is_local_room_accessible: joined or invited, a public or knockable join rule, world-readable
   * history, or a restricted join rule the user satisfies through one of its allowed rooms.
   */
  async accessible(head: RoomHead, userId: string): Promise<boolean> {
    const lookup = lookupIn(head.state);
    const membership = membershipOf(userId, lookup);
    if (membership === 'join' || membership === 'invite') return true;
    const rule = joinRuleOf(lookup);
    if (rule === 'public' || rule === 'knock' || rule === 'knock_restricted') return true;
    if (isWorldReadable(head)) return true;
    if (rule === 'restricted') {
      for (const allowed of allowedRoomIds(head)) {
        const other = await this.writer.head(allowed);
        if (other && membershipOf(userId, lookupIn(other.state)) === 'join') return true;
      }
    }
    return false;
  }

  /**
   * Synapse's _is_remote_room_accessible: a public or knockable join rule (the default when the remote sent none)
   * or world-readable history, the user joined to one of its allowed rooms here, or local access (an invite).
   */
  async #remoteAccessible(summary: RemoteRoomSummary, userId: string): Promise<boolean> {
    if (LISTED_JOIN_RULES.has(summary.join_rule ?? 'public') || summary.world_readable) return true;
    for (const allowed of summary.allowed_room_ids ?? []) {
      const other = await this.writer.head(allowed);
      if (other && membershipOf(userId, lookupIn(other.state)) === 'join') return true;
    }
    const head = await this.writer.head(summary.room_id);
    return head !== undefined && (await this.accessible(head, userId));
  }

  /** The room of a queue entry as the requester may see it, with the entries of its children; or undefined. */
  async #visit(
    entry: QueueEntry,
    userId: string,
    suggestedOnly: boolean,
  ): Promise<{ room: HierarchyRoom; children: QueueEntry[] } | undefined> {
    const head = await this.writer.head(entry.roomId);
    const fed = this.federation;
    if (head && (!fed || serversInRoom(head).has(fed.serverName))) {
      if (!(await this.accessible(head, userId))) return undefined;
      const state = roomTypeOf(head) === 'm.space' ? childEvents(head, suggestedOnly) : [];
      const children = state.map((c) => ({ roomId: c.state_key, depth: entry.depth + 1, via: viaOf(c) }));
      return { room: { ...fullSummary(head), children_state: state }, children };
    }
    if (!fed) return undefined;
    // A child that is not a space needs no request: its parent's answer described it.
    if (entry.remote && entry.remote.room_type !== 'm.space') {
      if (!(await this.#remoteAccessible(entry.remote, userId))) return undefined;
      return { room: { ...entry.remote, children_state: [] }, children: [] };
    }
    const space = await fed.hierarchy.fetch(entry.roomId, entry.via, suggestedOnly);
    if (!space || !(await this.#remoteAccessible(space.room, userId))) return undefined;
    const state = space.room.room_type === 'm.space' ? [...space.childrenState].sort(compareChildren) : [];
    const children = state
      .filter((c) => !space.inaccessible.has(c.state_key))
      .map((c) => ({
        roomId: c.state_key,
        depth: entry.depth + 1,
        via: viaOf(c),
        remote: space.children.get(c.state_key),
      }));
    return { room: { ...space.room, children_state: state }, children };
  }

  async get(req: HierarchyRequest): Promise<{ rooms: HierarchyRoom[]; next_batch?: string }> {
    if (req.limit !== undefined && req.limit < 1) throw new MatrixError('M_INVALID_PARAM', 'Invalid limit');
    if (req.maxDepth !== undefined && req.maxDepth < 0) {
      throw new MatrixError('M_INVALID_PARAM', 'Invalid max_depth');
    }
    const rootServer = serverNameOf(req.roomId);
    const rootEntry: QueueEntry = { roomId: req.roomId, depth: 0, via: rootServer ? [rootServer] : [] };
    if (!(await this.#visit(rootEntry, req.userId, req.suggestedOnly))) {
      throw new MatrixError(
        'M_FORBIDDEN',
        `User ${req.userId} not in room ${req.roomId}, and room previews are disabled`,
      );
    }
    const limit = Math.min(req.limit ?? MAX_ROOMS, MAX_ROOMS);
    let queue: QueueEntry[] = [rootEntry];
    const processed = new Set<string>();
    if (req.from !== undefined) {
      const s = this.#session(req.from);
      if (
        s.userId !== req.userId ||
        s.roomId !== req.roomId ||
        s.suggestedOnly !== req.suggestedOnly ||
        s.maxDepth !== req.maxDepth
      ) {
        throw new MatrixError(
          'M_INVALID_PARAM',
          'suggested_only and max_depth cannot change on paginated requests',
        );
      }
      queue = [...s.queue];
      for (const r of s.processed) processed.add(r);
    }

    const rooms: HierarchyRoom[] = [];
    while (queue.length > 0 && rooms.length < limit) {
      const entry = queue.pop() as QueueEntry;
      if (processed.has(entry.roomId)) continue;
      processed.add(entry.roomId);
      const visited = await this.#visit(entry, req.userId, req.suggestedOnly);
      if (!visited) continue;
      rooms.push(visited.room);
      if (req.maxDepth === undefined || entry.depth < req.maxDepth) {
        // Reversed, so that the next room to visit (in the children's order) is at the end of the stack.
        for (const c of [...visited.children].reverse()) queue.push(c);
      }
    }

    const out: { rooms: HierarchyRoom[]; next_batch?: string } = { rooms };
    if (queue.length > 0) {
      out.next_batch = this.#store({
        userId: req.userId,
        roomId: req.roomId,
        suggestedOnly: req.suggestedOnly,
        maxDepth: req.maxDepth,
        queue,
        processed: [...processed],
        expires: Date.now() + SESSION_TTL_MS,
      });
    }
    return out;
  }

  #session(token: string): Session {
    const s = this.#sessions.get(token);
    if (!s || s.expires < Date.now()) {
      this.#sessions.delete(token);
      throw new MatrixError('M_INVALID_PARAM', 'Unknown pagination token');
    }
    return s;
  }

  #store(session: Session): string {
    const now = Date.now();
    for (const [k, s] of this.#sessions) {
      if (s.expires >= now && this.#sessions.size < MAX_SESSIONS) break;
      this.#sessions.delete(k);
    }
    const token = randomBytes(18).toString('base64url');
    this.#sessions.set(token, session);
    return token;
  }
}
