/**
 * The ephemeral data /sync delivers beside the timeline: receipts and typing per room, presence per user. Each
 * function builds the client-format events; /sync decides the rooms, users and stream range.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.js';
import { presenceInRange } from '../storage/presence.js';
import { receiptsInRange } from '../storage/receipts.js';
import type { TypingStore } from './typing.js';

/** `{ $eventId: { receiptType: { userId: { ts, thread_id? } } } }` */
export type ReceiptContent = Record<string, Record<string, Record<string, Record<string, unknown>>>>;

export interface ReceiptEvent {
  type: 'm.receipt';
  content: ReceiptContent;
}

export interface TypingEvent {
  type: 'm.typing';
  content: { user_ids: string[] };
}

export interface PresenceContent {
  presence: string;
  last_active_ago?: number;
  status_msg?: string;
  currently_active?: boolean;
}

export interface PresenceEvent {
  type: 'm.presence';
  sender: string;
  content: PresenceContent;
}

/** A user active within this long is reported as currently active (Synapse's LAST_ACTIVE_GRANULARITY). */
export const CURRENTLY_ACTIVE_MS = 60_000;

/**
 * One m.receipt event per room that has receipts changed in (sinceExclusive, toInclusive], or, when
 * `sinceExclusive` is null (initial sync), every current receipt up to `toInclusive`. `roomNids` maps room_nid to
 * room id. m.read.private receipts appear only when they are `userId`'s own; a threaded receipt carries its
 * `thread_id` in the per-user data. Rooms without receipts are absent from the result.
 */
export async function receiptEventsForRooms(
  db: Kysely<Database>,
  roomNids: ReadonlyMap<number, string>,
  userId: string,
  sinceExclusive: number | null,
  toInclusive: number,
): Promise<Map<string, ReceiptEvent>> {
  const out = new Map<string, ReceiptEvent>();
  if (roomNids.size === 0) return out;
  const rows = await receiptsInRange(db, [...roomNids.keys()], userId, sinceExclusive, toInclusive);
  for (const r of rows) {
    const roomId = roomNids.get(r.roomNid);
    if (roomId === undefined) continue;
    let ev = out.get(roomId);
    if (!ev) out.set(roomId, (ev = { type: 'm.receipt', content: {} }));
    const data = parseData(r.data);
    if (r.threadId) data.thread_id = r.threadId;
    const byType = (ev.content[r.eventId] ??= {});
    (byType[r.receiptType] ??= {})[r.userId] = data;
  }
  return out;
}

function parseData(json: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(json);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // A damaged row still says who read what; only its timestamp is lost.
  }
  return {};
}

/**
 * m.presence events for the users whose presence changed in (since, to]. With `since` null (initial sync) every
 * known presence up to `to` except offline ones, as Synapse does. Callers pass only users the syncing user may
 * see (those sharing a room, and the user itself), and skip this when `presence.enabled` is false.
 */
export async function presenceEventsFor(
  db: Kysely<Database>,
  userIds: Iterable<string>,
  since: number | null,
  to: number,
  now: number = Date.now(),
): Promise<PresenceEvent[]> {
  const ids = [...new Set(userIds)];
  if (ids.length === 0) return [];
  const rows = await presenceInRange(db, ids, since, to);
  const out: PresenceEvent[] = [];
  for (const r of rows) {
    if (since === null && r.state === 'offline') continue;
    out.push({ type: 'm.presence', sender: r.userId, content: presenceContent(r, now) });
  }
  return out;
}

/** The client format of a presence row (Synapse's `format_user_presence_state`). */
export function presenceContent(
  r: { state: string; statusMsg: string | null; lastActiveTs: number; currentlyActive: boolean },
  now: number = Date.now(),
): PresenceContent {
  const content: PresenceContent = { presence: r.state };
  if (r.lastActiveTs) content.last_active_ago = Math.max(0, now - r.lastActiveTs);
  if (r.statusMsg) content.status_msg = r.statusMsg;
  if (r.state === 'online') {
    content.currently_active = r.currentlyActive && now - r.lastActiveTs < CURRENTLY_ACTIVE_MS;
  }
  return content;
}

/** The m.typing event of a room: who is typing now (clients replace their list with it). */
export function typingEvent(store: TypingStore, roomId: string): TypingEvent {
  return { type: 'm.typing', content: { user_ids: store.typingIn(roomId) } };
}
