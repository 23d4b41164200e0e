/** Which remote users this server follows: those joined to a room where a local user is joined too. */
import type { Executor } from './users.js';

/** The users of `userIds` that share a joined room with a user of this server (a row of `users`). */
export async function usersSharingRoomWithLocal(
  db: Executor,
  userIds: readonly string[],
): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < userIds.length; i += 500) {
    const rows = await db
      .selectFrom('room_members as them')
      .innerJoin('room_members as us', 'us.room_nid', 'them.room_nid')
      .innerJoin('users as u', 'u.user_id', 'us.user_id')
      .select('them.user_id')
      .distinct()
      .where('them.user_id', 'in', userIds.slice(i, i + 500))
      .where('them.membership', '=', 'join')
      .where('us.membership', '=', 'join')
      .execute();
    for (const r of rows) out.add(r.user_id);
  }
  return out;
}
