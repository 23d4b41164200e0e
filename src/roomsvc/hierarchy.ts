/**
 * The space hierarchy (GET /_matrix/client/v1/rooms/{roomId}/hierarchy), following Synapse's RoomSummaryHandler:
 * a depth-first walk over valid m.space.child events (non-empty `via`) of rooms whose type is m.space, returning
 * the rooms the requester may see. Pagination keeps the remaining queue in a short-lived session named by an
 * opaque token; the token is only valid for the same requester, room, suggested_only and max_depth.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../api/errors.js';
import { lookupIn, type RoomHead, type StateEntry } from '../input/room-head.js';
import type { RoomWriter } from '../input/room-writer.js';
import { joinRuleOf, membershipOf } from '../rooms/auth/power-levels.js';
import type { JsonObject } from '../rooms/event.js';
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

export type HierarchyRoom = FullRoomSummary & { children_state: StrippedChild[] };

interface QueueEntry {
  roomId: string;
  depth: number;
}

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

function compareChildren(a: StateEntry, b: StateEntry): number {
  const oa = orderOf(a.pdu.content);
  const ob = orderOf(b.pdu.content);
  if (oa !== undefined && ob === undefined) return -1;
  if (oa === undefined && ob !== undefined) return 1;
  if (oa !== undefined && ob !== undefined && oa !== ob) return oa < ob ? -1 : 1;
  if (a.pdu.origin_server_ts !== b.pdu.origin_server_ts)
    return a.pdu.origin_server_ts - b.pdu.origin_server_ts;
  const ka = a.pdu.state_key ?? '';
  const kb = b.pdu.state_key ?? '';
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** The valid m.space.child events of a room, in the spec's order. */
export function childEvents(head: RoomHead, suggestedOnly: boolean): StateEntry[] {
  const out: StateEntry[] = [];
  for (const e of head.state.values()) {
    if (e.pdu.type !== 'm.space.child' || !hasValidVia(e.pdu.content)) continue;
    if (suggestedOnly && e.pdu.content.suggested !== true) continue;
    out.push(e);
  }
  return out.sort(compareChildren);
}

export class SpaceHierarchy {
  #sessions = new Map<string, Session>();

  constructor(private readonly writer: RoomWriter) {}

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

  async get(req: HierarchyRequest): Promise<{ rooms: HierarchyRoom[]; next_batch?: string }> {
    if (req.limit !== undefined && req.limit < 1) throw new MatrixError('M_INVALID_PARAM', 'Invalid limit');
    if (req.maxDepth !== undefined && req.maxDepth < 0) {
      throw new MatrixError('M_INVALID_PARAM', 'Invalid max_depth');
    }
    const root = await this.writer.head(req.roomId);
    if (!root || !(await this.accessible(root, req.userId))) {
      throw new MatrixError(
        'M_FORBIDDEN',
        `User ${req.userId} not in room ${req.roomId}, and room previews are disabled`,
      );
    }
    const limit = Math.min(req.limit ?? MAX_ROOMS, MAX_ROOMS);
    let queue: QueueEntry[] = [{ roomId: req.roomId, depth: 0 }];
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
      const head = await this.writer.head(entry.roomId);
      // Rooms this server is not in would need federation: they are left out, as inaccessible ones are.
      if (!head || !(await this.accessible(head, req.userId))) continue;
      const children = roomTypeOf(head) === 'm.space' ? childEvents(head, req.suggestedOnly) : [];
      rooms.push({
        ...fullSummary(head),
        children_state: children.map((c) => ({
          type: c.pdu.type,
          state_key: c.pdu.state_key ?? '',
          content: c.pdu.content,
          sender: c.pdu.sender,
          origin_server_ts: c.pdu.origin_server_ts,
        })),
      });
      if (req.maxDepth === undefined || entry.depth < req.maxDepth) {
        // Reversed, so that the next room to visit (in the children's order) is at the end of the stack.
        for (const c of [...children].reverse()) {
          queue.push({ roomId: c.pdu.state_key ?? '', depth: entry.depth + 1 });
        }
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
