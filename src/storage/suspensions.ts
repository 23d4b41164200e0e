/** Suspended accounts (Matrix v1.18 PUT /admin/suspend/{userId}): a row per suspended user. */
import type { Executor } from './users.js';

export async function isSuspended(db: Executor, userId: string): Promise<boolean> {
  const row = await db
    .selectFrom('user_suspensions')
    .select('user_id')
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return row !== undefined;
}

export async function setSuspended(db: Executor, userId: string, suspended: boolean): Promise<void> {
  if (!suspended) {
    await db.deleteFrom('user_suspensions').where('user_id', '=', userId).execute();
    return;
  }
  await db
    .insertInto('user_suspensions')
    .values({ user_id: userId, suspended_ts: Date.now() })
    .onConflict((oc) => oc.column('user_id').doNothing())
    .execute();
}
