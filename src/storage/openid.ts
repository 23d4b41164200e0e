/** OpenID tokens (client-server API "OpenID"): stored as sha256 hashes with their expiry. */
import type { Executor } from './users.js';

export async function insertOpenidToken(
  db: Executor,
  t: { tokenHash: string; userId: string; expiresTs: number },
): Promise<void> {
  await db
    .insertInto('openid_tokens')
    .values({ token_hash: t.tokenHash, user_id: t.userId, expires_ts: t.expiresTs })
    .execute();
}

/** The user of an unexpired token, or undefined. */
export async function findOpenidTokenUser(
  db: Executor,
  tokenHash: string,
  now: number,
): Promise<string | undefined> {
  const row = await db
    .selectFrom('openid_tokens')
    .select('user_id')
    .where('token_hash', '=', tokenHash)
    .where('expires_ts', '>', now)
    .executeTakeFirst();
  return row?.user_id;
}

export async function deleteExpiredOpenidTokens(db: Executor, now: number): Promise<void> {
  await db.deleteFrom('openid_tokens').where('expires_ts', '<=', now).execute();
}
