/** Registration tokens (m.login.registration_token), compatible with Synapse's admin API fields. */
import type { Executor } from './users.js';

/** True when the token exists, has not expired and has uses left. */
export async function checkRegistrationToken(db: Executor, token: string, now: number): Promise<boolean> {
  const row = await db
    .selectFrom('registration_tokens')
    .selectAll()
    .where('token', '=', token)
    .executeTakeFirst();
  if (!row) return false;
  if (row.expiry_time !== null && row.expiry_time <= now) return false;
  if (row.uses_allowed !== null && row.completed + row.pending >= row.uses_allowed) return false;
  return true;
}

/** Counts one completed registration against the token. */
export async function useRegistrationToken(db: Executor, token: string): Promise<void> {
  await db
    .updateTable('registration_tokens')
    .set((eb) => ({ completed: eb('completed', '+', 1) }))
    .where('token', '=', token)
    .execute();
}

export async function createRegistrationToken(
  db: Executor,
  t: { token: string; usesAllowed: number | null; expiryTime: number | null },
): Promise<void> {
  await db
    .insertInto('registration_tokens')
    .values({
      token: t.token,
      uses_allowed: t.usesAllowed,
      expiry_time: t.expiryTime,
      pending: 0,
      completed: 0,
    })
    .execute();
}
