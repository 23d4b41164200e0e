/** Read receipts (m.read, m.read.private): the latest per (room, user, type, thread), stamped for /sync. */
import type { Executor } from './users.js';

export interface ReceiptRow {
  roomNid: number;
  userId: string;
  receiptType: string;
  /** '' for unthreaded. */
  threadId: string;
  eventId: string;
  /** JSON object text, e.g. `{"ts":1700000000000}`. */
  data: string;
}

export interface StoredReceipt extends ReceiptRow {
  streamPos: number;
}

/**
 * Stores a receipt unless the user already has one of this type and thread on a later event of the room (receipts
 * only move forward, as in Synapse). `ordering` is the stream ordering of `row.eventId`. Returns whether it stored.
 */
export async function putReceiptIfNewer(
  db: Executor,
  row: ReceiptRow,
  ordering: number,
  streamPos: number,
): Promise<boolean> {
  const existing = await db
    .selectFrom('receipts as r')
    .leftJoin('events as e', 'e.event_id', 'r.event_id')
    .select(['r.event_id', 'e.stream_ordering'])
    .where('r.room_nid', '=', row.roomNid)
    .where('r.user_id', '=', row.userId)
    .where('r.receipt_type', '=', row.receiptType)
    .where('r.thread_id', '=', row.threadId)
    .executeTakeFirst();
  if (existing?.stream_ordering !== null && existing !== undefined) {
    if (Number(existing.stream_ordering) >= ordering) return false;
  }
  await db
    .insertInto('receipts')
    .values({
      room_nid: row.roomNid,
      user_id: row.userId,
      receipt_type: row.receiptType,
      thread_id: row.threadId,
      event_id: row.eventId,
      data: row.data,
      stream_pos: streamPos,
    })
    .onConflict((oc) =>
      oc
        .columns(['room_nid', 'user_id', 'receipt_type', 'thread_id'])
        .doUpdateSet({ event_id: row.eventId, data: row.data, stream_pos: streamPos }),
    )
    .execute();
  return true;
}

/** The event id a user's receipt of one type and thread points at, if any. */
export async function getReceiptEventId(
  db: Executor,
  roomNid: number,
  userId: string,
  receiptType: string,
  threadId = '',
): Promise<string | undefined> {
  const row = await db
    .selectFrom('receipts')
    .select('event_id')
    .where('room_nid', '=', roomNid)
    .where('user_id', '=', userId)
    .where('receipt_type', '=', receiptType)
    .where('thread_id', '=', threadId)
    .executeTakeFirst();
  return row?.event_id;
}

/**
 * Receipts of the given rooms changed in (since, to] (all up to `to` when `since` is null) that `viewer` may see:
 * everyone's m.read, only the viewer's own m.read.private.
 */
export async function receiptsInRange(
  db: Executor,
  roomNids: readonly number[],
  viewer: string,
  since: number | null,
  to: number,
): Promise<StoredReceipt[]> {
  const out: StoredReceipt[] = [];
  for (let i = 0; i < roomNids.length; i += 500) {
    let q = db
      .selectFrom('receipts')
      .selectAll()
      .where('room_nid', 'in', roomNids.slice(i, i + 500))
      .where('stream_pos', '<=', to)
      .where((eb) => eb.or([eb('receipt_type', '!=', 'm.read.private'), eb('user_id', '=', viewer)]));
    if (since !== null) q = q.where('stream_pos', '>', since);
    for (const r of await q.orderBy('stream_pos').execute()) {
      out.push({
        roomNid: Number(r.room_nid),
        userId: r.user_id,
        receiptType: r.receipt_type,
        threadId: r.thread_id,
        eventId: r.event_id,
        data: r.data,
        streamPos: Number(r.stream_pos),
      });
    }
  }
  return out;
}

/**
 * The thread an event belongs to for receipts (Synapse's `get_thread_id_for_receipts`): climbing at most 3
 * relations up, the root of the topmost m.thread relation; else the topmost event itself when it is a thread root
 * (a root, or an edit or reaction of one, counts as in its thread); else undefined (the main timeline).
 */
export async function threadOfEvent(db: Executor, eventId: string): Promise<string | undefined> {
  let current = eventId;
  let thread: string | undefined;
  for (let depth = 0; depth <= 3; depth++) {
    const rel = await relationOf(db, current);
    if (!rel) break;
    if (rel.relType === 'm.thread') thread = rel.relatesTo;
    current = rel.relatesTo;
  }
  if (thread !== undefined) return thread;
  const isRoot = await db
    .selectFrom('event_relations')
    .select('event_nid')
    .where('relates_to_id', '=', current)
    .where('rel_type', '=', 'm.thread')
    .limit(1)
    .executeTakeFirst();
  return isRoot ? current : undefined;
}

/** True when the event has an m.thread relation (it is inside a thread, not in the main timeline). */
export async function isInThread(db: Executor, eventId: string): Promise<boolean> {
  return (await relationOf(db, eventId))?.relType === 'm.thread';
}

async function relationOf(
  db: Executor,
  eventId: string,
): Promise<{ relatesTo: string; relType: string } | undefined> {
  const row = await db
    .selectFrom('event_relations as r')
    .innerJoin('events as e', 'e.event_nid', 'r.event_nid')
    .select(['r.relates_to_id', 'r.rel_type'])
    .where('e.event_id', '=', eventId)
    .executeTakeFirst();
  return row ? { relatesTo: row.relates_to_id, relType: row.rel_type } : undefined;
}
