/** Suspended accounts (Matrix v1.18 PUT /admin/suspend/{userId}): a row per suspended user. */
import type { Executor } from './users.js';

/**
 * Answers remembered briefly per user, since the suspension gate asks on every send: a change made here clears the
 * user's entry at once; one made by another process (e.g. SQL by hand) is seen within CACHE_MS.
 */
const CACHE_MS = 5_000;
const CACHE_SIZE = 10_000;
/** Per database (one process may open several, as the tests do). */
const caches = new WeakMap<Executor, Map<string, { suspended: boolean; at: number }>>();

function cacheOf(db: Executor): Map<string, { suspended: boolean; at: number }> {
  let cache = caches.get(db);
  if (!cache) {
    cache = new Map();
    caches.set(db, cache);
  }
  return cache;
}

export async function isSuspended(db: Executor, userId: string): Promise<boolean> {
  const cache = cacheOf(db);
  const now = Date.now();
  const hit = cache.get(userId);
  if (hit && now - hit.at < CACHE_MS) return hit.suspended;
  const suspended = await readSuspended(db, userId);
  if (cache.size >= CACHE_SIZE) cache.clear();
  cache.set(userId, { suspended, at: now });
  return suspended;
}

async function readSuspended(db: Executor, userId: string): Promise<boolean> {
  const row = await db
    .selectFrom('user_suspensions')
    .select('user_id')
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return row !== undefined;
}

export async function setSuspended(db: Executor, userId: string, suspended: boolean): Promise<void> {
  if (suspended) {
    await db
      .insertInto('user_suspensions')
      .values({ user_id: userId, suspended_ts: Date.now() })
      .onConflict((oc) => oc.column('user_id').doNothing())
      .execute();
  } else {
    await db.deleteFrom('user_suspensions').where('user_id', '=', userId).execute();
  }
  cacheOf(db).delete(userId);
}
