/**
 * The homeserver → application service queue (see migration 0017): per service a delivered stream position and a
 * transaction counter, at most one built-but-unacknowledged transaction, and the reads that build transactions
 * (room interest, to-device messages in a stream range).
 */
import type { Executor } from './users.js';

export interface AppserviceState {
  asId: string;
  streamPos: number;
  lastTxnId: number;
}

export interface PendingTxn {
  asId: string;
  txnId: number;
  fromPos: number;
  toPos: number;
  body: string;
}

export async function getAppserviceState(db: Executor, asId: string): Promise<AppserviceState | undefined> {
  const r = await db.selectFrom('appservice_state').selectAll().where('as_id', '=', asId).executeTakeFirst();
  return r ? { asId: r.as_id, streamPos: Number(r.stream_pos), lastTxnId: Number(r.last_txn_id) } : undefined;
}

export async function allAppserviceStates(db: Executor): Promise<AppserviceState[]> {
  const rows = await db.selectFrom('appservice_state').selectAll().orderBy('as_id').execute();
  return rows.map((r) => ({
    asId: r.as_id,
    streamPos: Number(r.stream_pos),
    lastTxnId: Number(r.last_txn_id),
  }));
}

/** Creates the service's row at `pos` unless it exists; returns the stored state. */
export async function initAppserviceState(db: Executor, asId: string, pos: number): Promise<AppserviceState> {
  await db
    .insertInto('appservice_state')
    .values({ as_id: asId, stream_pos: pos, last_txn_id: 0 })
    .onConflict((oc) => oc.column('as_id').doNothing())
    .execute();
  return (await getAppserviceState(db, asId)) as AppserviceState;
}

/** Moves the delivered position (a range that held nothing for the service). Never moves it backwards. */
export async function advanceAppservicePosition(db: Executor, asId: string, pos: number): Promise<void> {
  await db
    .updateTable('appservice_state')
    .set({ stream_pos: pos })
    .where('as_id', '=', asId)
    .where('stream_pos', '<', pos)
    .execute();
}

export async function getPendingTxn(db: Executor, asId: string): Promise<PendingTxn | undefined> {
  const r = await db.selectFrom('appservice_txns').selectAll().where('as_id', '=', asId).executeTakeFirst();
  return r
    ? {
        asId: r.as_id,
        txnId: Number(r.txn_id),
        fromPos: Number(r.from_pos),
        toPos: Number(r.to_pos),
        body: r.body,
      }
    : undefined;
}

export async function allPendingTxns(db: Executor): Promise<PendingTxn[]> {
  const rows = await db.selectFrom('appservice_txns').selectAll().orderBy('as_id').execute();
  return rows.map((r) => ({
    asId: r.as_id,
    txnId: Number(r.txn_id),
    fromPos: Number(r.from_pos),
    toPos: Number(r.to_pos),
    body: r.body,
  }));
}

/** Stores a new transaction and its id as the last one used (call inside a transaction). */
export async function savePendingTxn(
  db: Executor,
  txn: Omit<PendingTxn, 'txnId'>,
  now: number,
): Promise<number> {
  const state = await getAppserviceState(db, txn.asId);
  const txnId = (state?.lastTxnId ?? 0) + 1;
  await db
    .insertInto('appservice_state')
    .values({ as_id: txn.asId, stream_pos: txn.fromPos, last_txn_id: txnId })
    // The position moves to the transaction's start too (ranges before it held nothing for the service).
    .onConflict((oc) => oc.column('as_id').doUpdateSet({ last_txn_id: txnId, stream_pos: txn.fromPos }))
    .execute();
  await db
    .insertInto('appservice_txns')
    .values({
      as_id: txn.asId,
      txn_id: txnId,
      from_pos: txn.fromPos,
      to_pos: txn.toPos,
      body: txn.body,
      created_ts: now,
    })
    .execute();
  return txnId;
}

/**
 * The service acknowledged the transaction: its row goes, the position moves to its end, and the to-device messages
 * it carried are deleted (delivered once). Call inside a transaction.
 */
export async function completeTxn(
  db: Executor,
  txn: PendingTxn,
  toDevice: readonly { userId: string; deviceId: string }[],
): Promise<void> {
  await db
    .deleteFrom('appservice_txns')
    .where('as_id', '=', txn.asId)
    .where('txn_id', '=', txn.txnId)
    .execute();
  await advanceAppservicePosition(db, txn.asId, txn.toPos);
  const seen = new Set<string>();
  for (const { userId, deviceId } of toDevice) {
    const key = `${userId}\u0000${deviceId}`;
    if (seen.has(key)) continue;
    seen.add(key);
    await db
      .deleteFrom('to_device_messages')
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('stream_pos', '>', txn.fromPos)
      .where('stream_pos', '<=', txn.toPos)
      .execute();
  }
}

/** Removes every row of a service (no longer configured). */
export async function deleteAppserviceRows(db: Executor, asId: string): Promise<void> {
  await db.deleteFrom('appservice_txns').where('as_id', '=', asId).execute();
  await db.deleteFrom('appservice_state').where('as_id', '=', asId).execute();
}

export interface RoomFacts {
  roomId: string;
  /** Users joined now. */
  joined: string[];
  /** Local aliases pointing at the room, and its canonical alias and alt aliases. */
  aliases: string[];
}

/** What decides an application service's interest in a room: its id, joined members and aliases. */
export async function roomInterestFacts(db: Executor, roomNid: number): Promise<RoomFacts | undefined> {
  const room = await db
    .selectFrom('rooms')
    .select('room_id')
    .where('room_nid', '=', roomNid)
    .executeTakeFirst();
  if (!room) return undefined;
  const members = await db
    .selectFrom('room_members')
    .select('user_id')
    .where('room_nid', '=', roomNid)
    .where('membership', '=', 'join')
    .execute();
  const local = await db
    .selectFrom('room_aliases')
    .select('alias')
    .where('room_id', '=', room.room_id)
    .execute();
  const aliases = local.map((r) => r.alias);
  const canonical = await db
    .selectFrom('current_state as c')
    .innerJoin('events as e', 'e.event_nid', 'c.event_nid')
    .select('e.json')
    .where('c.room_nid', '=', roomNid)
    .where('c.type', '=', 'm.room.canonical_alias')
    .where('c.state_key', '=', '')
    .executeTakeFirst();
  if (canonical) {
    try {
      const content = (JSON.parse(canonical.json) as { content?: { alias?: unknown; alt_aliases?: unknown } })
        .content;
      if (typeof content?.alias === 'string') aliases.push(content.alias);
      if (Array.isArray(content?.alt_aliases))
        for (const a of content.alt_aliases) if (typeof a === 'string') aliases.push(a);
    } catch {
      // unreadable canonical alias: the local aliases decide
    }
  }
  return { roomId: room.room_id, joined: members.map((m) => m.user_id), aliases };
}

export interface ToDeviceInRange {
  user_id: string;
  device_id: string;
  stream_pos: number;
  sender: string;
  type: string;
  content: string;
}

/** To-device messages to users of this server with `after < stream_pos <= to`, in stream order. */
export async function toDeviceInRange(
  db: Executor,
  serverName: string,
  after: number,
  to: number,
): Promise<ToDeviceInRange[]> {
  const rows = await db
    .selectFrom('to_device_messages')
    .selectAll()
    .where('stream_pos', '>', after)
    .where('stream_pos', '<=', to)
    .where('user_id', 'like', `%:${serverName}`)
    .orderBy('stream_pos')
    .orderBy('user_id')
    .orderBy('device_id')
    .execute();
  return rows.map((r) => ({ ...r, stream_pos: Number(r.stream_pos) }));
}

/** Device ids of a user. */
export async function deviceIdsOf(db: Executor, userId: string): Promise<string[]> {
  const rows = await db.selectFrom('devices').select('device_id').where('user_id', '=', userId).execute();
  return rows.map((r) => r.device_id);
}

export interface ReceiptInRange {
  room_nid: number;
  room_id: string;
  user_id: string;
  receipt_type: string;
  thread_id: string;
  event_id: string;
  data: string;
}

/** Receipts of every type stamped in (after, to], with their room ids, in stream order. */
export async function receiptsInStreamRange(
  db: Executor,
  after: number,
  to: number,
): Promise<ReceiptInRange[]> {
  const rows = await db
    .selectFrom('receipts as r')
    .innerJoin('rooms as m', 'm.room_nid', 'r.room_nid')
    .select(['r.room_nid', 'm.room_id', 'r.user_id', 'r.receipt_type', 'r.thread_id', 'r.event_id', 'r.data'])
    .where('r.stream_pos', '>', after)
    .where('r.stream_pos', '<=', to)
    .orderBy('r.stream_pos')
    .execute();
  return rows.map((r) => ({ ...r, room_nid: Number(r.room_nid) }));
}

/** The nid of a room by id, or undefined. */
export async function roomNidById(db: Executor, roomId: string): Promise<number | undefined> {
  const r = await db.selectFrom('rooms').select('room_nid').where('room_id', '=', roomId).executeTakeFirst();
  return r ? Number(r.room_nid) : undefined;
}
