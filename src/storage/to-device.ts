/** Pending to-device messages of each device, kept until the device's sync acknowledges them. */
import { isUniqueViolation } from './dialect.js';
import type { Executor } from './users.js';

export interface ToDeviceRow {
  user_id: string;
  device_id: string;
  stream_pos: number;
  sender: string;
  type: string;
  content: string;
}

/** Records the sending device's transaction; false when it was already recorded (a retry). */
export async function recordToDeviceTxn(
  db: Executor,
  userId: string,
  deviceId: string,
  txnId: string,
  now: number,
): Promise<boolean> {
  try {
    await db
      .insertInto('to_device_txns')
      .values({ user_id: userId, device_id: deviceId, txn_id: txnId, created_ts: now })
      .execute();
    return true;
  } catch (err) {
    if (isUniqueViolation(err)) return false;
    throw err;
  }
}

export async function hasToDeviceTxn(
  db: Executor,
  userId: string,
  deviceId: string,
  txnId: string,
): Promise<boolean> {
  const row = await db
    .selectFrom('to_device_txns')
    .select('txn_id')
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .where('txn_id', '=', txnId)
    .executeTakeFirst();
  return row !== undefined;
}

export async function insertToDeviceMessages(db: Executor, rows: readonly ToDeviceRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 200) {
    await db
      .insertInto('to_device_messages')
      .values(rows.slice(i, i + 200))
      .execute();
  }
}

/** The device's messages with `after < stream_pos <= to`, oldest first. */
export async function pendingToDevice(
  db: Executor,
  userId: string,
  deviceId: string,
  after: number,
  to: number,
  limit: number,
): Promise<ToDeviceRow[]> {
  const rows = await db
    .selectFrom('to_device_messages')
    .selectAll()
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .where('stream_pos', '>', after)
    .where('stream_pos', '<=', to)
    .orderBy('stream_pos')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ ...r, stream_pos: Number(r.stream_pos) }));
}

/** Deletes the device's messages up to and including `upTo` (acknowledged by a sync from that position). */
export async function deleteToDeviceUpTo(
  db: Executor,
  userId: string,
  deviceId: string,
  upTo: number,
): Promise<void> {
  await db
    .deleteFrom('to_device_messages')
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .where('stream_pos', '<=', upTo)
    .execute();
}
