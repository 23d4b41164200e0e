/** Users and their profile columns. */
import type { Kysely, Transaction } from 'kysely';
import type { Database, NewUser, UserRow } from './schema.js';

export type Executor = Kysely<Database> | Transaction<Database>;

export async function getUser(db: Executor, userId: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('user_id', '=', userId).executeTakeFirst();
}

export async function insertUser(db: Executor, user: NewUser): Promise<void> {
  await db.insertInto('users').values(user).execute();
}

export async function setPasswordHash(db: Executor, userId: string, hash: string | null): Promise<void> {
  await db.updateTable('users').set({ password_hash: hash }).where('user_id', '=', userId).execute();
}

export async function setProfileField(
  db: Executor,
  userId: string,
  field: 'displayname' | 'avatar_url',
  value: string | null,
): Promise<void> {
  await db
    .updateTable('users')
    .set({ [field]: value })
    .where('user_id', '=', userId)
    .execute();
}

/** Turns a guest account into a full one with a password; false when `userId` is not a guest (any more). */
export async function upgradeGuestUser(db: Executor, userId: string, passwordHash: string): Promise<boolean> {
  const res = await db
    .updateTable('users')
    .set({ is_guest: 0, password_hash: passwordHash })
    .where('user_id', '=', userId)
    .where('is_guest', '=', 1)
    .where('deactivated', '=', 0)
    .executeTakeFirst();
  return Number(res.numUpdatedRows) > 0;
}

export async function markDeactivated(db: Executor, userId: string): Promise<void> {
  await db
    .updateTable('users')
    .set({ deactivated: 1, password_hash: null, displayname: null, avatar_url: null })
    .where('user_id', '=', userId)
    .execute();
}

export async function countUsers(db: Executor): Promise<number> {
  const row = await db
    .selectFrom('users')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}
