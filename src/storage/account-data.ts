/** Global and per-room account data, stamped with stream positions for /sync. */
import { affectsExclusions, forgetExclusions } from './sync-exclusions.js';
import type { Executor } from './users.js';

/** Global (not per-room) account data is stored with this room id. */
export const GLOBAL_ACCOUNT_DATA_ROOM = '';

export async function putAccountData(
  db: Executor,
  row: { userId: string; roomId: string; type: string; content: string; streamPos: number },
): Promise<void> {
  await db
    .insertInto('account_data')
    .values({
      user_id: row.userId,
      room_id: row.roomId,
      type: row.type,
      content: row.content,
      stream_pos: row.streamPos,
    })
    .onConflict((oc) =>
      oc
        .columns(['user_id', 'room_id', 'type'])
        .doUpdateSet({ content: row.content, stream_pos: row.streamPos }),
    )
    .execute();
  // Callers write with the database itself (autocommit): the row has committed.
  if (affectsExclusions(row.roomId, row.type)) forgetExclusions(db, row.userId);
}

export async function getAccountData(
  db: Executor,
  userId: string,
  roomId: string,
  type: string,
): Promise<string | undefined> {
  const row = await db
    .selectFrom('account_data')
    .select('content')
    .where('user_id', '=', userId)
    .where('room_id', '=', roomId)
    .where('type', '=', type)
    .executeTakeFirst();
  return row?.content;
}

export async function listAccountDataSince(
  db: Executor,
  userId: string,
  since: number,
  upTo: number,
): Promise<{ room_id: string; type: string; content: string; stream_pos: number }[]> {
  return db
    .selectFrom('account_data')
    .select(['room_id', 'type', 'content', 'stream_pos'])
    .where('user_id', '=', userId)
    .where('stream_pos', '>', since)
    .where('stream_pos', '<=', upTo)
    .orderBy('stream_pos')
    .execute();
}
