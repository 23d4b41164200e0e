/**
 * The published room directory (GET/POST /publicRooms), as Synapse lists it: published rooms that are publicly
 * joinable, knockable or world-readable, ordered by joined members (largest first, then room id), filtered by a
 * case-insensitive search over name, topic and canonical alias, paged with opaque tokens.
 */
import { z } from 'zod';
import { MatrixError } from '../api/errors.js';
import type { RoomWriter } from '../input/room-writer.js';
import type { Storage } from '../storage/db.js';
import { summarizeRoom, type RoomSummary } from './room-summary.js';

export interface PublicRoomsQuery {
  limit?: number | undefined;
  since?: string | undefined;
  searchTerm?: string | undefined;
  /** Room types to include; `null` stands for rooms without a type. Absent: every type. */
  roomTypes?: (string | null)[] | undefined;
  /** The published rooms to list instead of the server's own list (an application service network's, or all). */
  roomIds?: string[] | undefined;
}

export interface PublicRoomsResponse {
  chunk: RoomSummary[];
  next_batch?: string;
  prev_batch?: string;
  total_room_count_estimate: number;
}

/** A position in the ordering and the direction to page from it. */
const Token = z.object({ j: z.number().int().min(0), r: z.string(), d: z.enum(['f', 'b']) });
type Token = z.infer<typeof Token>;

function formatToken(t: Token): string {
  return Buffer.from(JSON.stringify(t)).toString('base64url');
}

export function parsePublicRoomsToken(since: string): Token {
  try {
    return Token.parse(JSON.parse(Buffer.from(since, 'base64url').toString('utf8')));
  } catch {
    throw new MatrixError('M_INVALID_PARAM', 'Invalid pagination token');
  }
}

const LISTED_JOIN_RULES = new Set(['public', 'knock', 'knock_restricted']);

/** Sorts larger rooms first, then by room id: `a` before `b` is negative. */
function compare(a: { j: number; r: string }, b: { j: number; r: string }): number {
  if (a.j !== b.j) return b.j - a.j;
  return a.r < b.r ? -1 : a.r > b.r ? 1 : 0;
}

function matches(room: RoomSummary, q: PublicRoomsQuery): boolean {
  if (!room.world_readable && !LISTED_JOIN_RULES.has(room.join_rule ?? '')) return false;
  if (q.roomTypes && !q.roomTypes.includes(room.room_type ?? null)) return false;
  const term = q.searchTerm?.trim().toLowerCase();
  if (!term) return true;
  return [room.name, room.topic, room.canonical_alias].some((f) => f?.toLowerCase().includes(term));
}

export async function listPublicRooms(
  deps: { storage: Storage; writer: RoomWriter },
  q: PublicRoomsQuery,
): Promise<PublicRoomsResponse> {
  const since = q.since ? parsePublicRoomsToken(q.since) : undefined;
  const rows =
    q.roomIds?.map((room_id) => ({ room_id })) ??
    (await deps.storage.db.selectFrom('rooms').select('room_id').where('is_public', '=', 1).execute());
  const rooms: RoomSummary[] = [];
  for (const { room_id } of rows) {
    const head = await deps.writer.head(room_id);
    if (!head) continue;
    const summary = summarizeRoom(head);
    if (matches(summary, q)) rooms.push(summary);
  }
  const key = (r: RoomSummary) => ({ j: r.num_joined_members, r: r.room_id });
  rooms.sort((a, b) => compare(key(a), key(b)));

  const limit = q.limit && q.limit > 0 ? q.limit : rooms.length;
  let start = 0;
  let end: number;
  if (!since) {
    end = Math.min(rooms.length, limit);
  } else if (since.d === 'f') {
    start = rooms.findIndex((r) => compare(key(r), since) > 0);
    if (start < 0) start = rooms.length;
    end = Math.min(rooms.length, start + limit);
  } else {
    end = rooms.findIndex((r) => compare(key(r), since) >= 0);
    if (end < 0) end = rooms.length;
    start = Math.max(0, end - limit);
  }
  const chunk = rooms.slice(start, end);
  const out: PublicRoomsResponse = { chunk, total_room_count_estimate: rooms.length };
  const first = chunk[0];
  const last = chunk[chunk.length - 1];
  if (last && end < rooms.length) out.next_batch = formatToken({ ...key(last), d: 'f' });
  if (first && start > 0) out.prev_batch = formatToken({ ...key(first), d: 'b' });
  return out;
}
