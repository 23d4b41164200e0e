/** Reports of users (POST /users/{userId}/report), beside the room and event reports of `event_reports`. */
import type { Executor } from './users.js';

export interface UserReport {
  targetUserId: string;
  userId: string;
  reason: string;
  receivedTs: number;
}

export async function insertUserReport(db: Executor, r: UserReport): Promise<void> {
  await db
    .insertInto('user_reports')
    .values({
      target_user_id: r.targetUserId,
      user_id: r.userId,
      reason: r.reason,
      received_ts: r.receivedTs,
    })
    .execute();
}

/** Reports of `targetUserId`, oldest first (admin tooling and tests). */
export async function userReportsOf(db: Executor, targetUserId: string): Promise<UserReport[]> {
  const rows = await db
    .selectFrom('user_reports')
    .selectAll()
    .where('target_user_id', '=', targetUserId)
    .orderBy('id')
    .execute();
  return rows.map((r) => ({
    targetUserId: r.target_user_id,
    userId: r.user_id,
    reason: r.reason,
    receivedTs: Number(r.received_ts),
  }));
}
