/**
 * What a user's global account data keeps out of what they are served: the users they ignore
 * (`m.ignored_user_list`, client-server API "Ignoring Users") and whether they block every invite
 * (`m.invite_permission_config` with `default_action: "block"`, v1.18 "Invite permission").
 *
 * Read on every /sync, /messages and /context, so remembered per database and user (bounded LRU, filled from
 * committed rows only). `putAccountData` forgets a user's entry once a write of either type has committed; a read
 * that overlapped such a write is not remembered (a per-user generation counter), so the next request reads again.
 */
import { LruCache } from '../cache/lru.js';
import type { Executor } from './users.js';

export const IGNORED_USER_LIST_TYPE = 'm.ignored_user_list';
export const INVITE_PERMISSION_TYPE = 'm.invite_permission_config';

export interface SyncExclusions {
  /** Users whose non-state events and invites are not served (never the user themself). */
  ignored: ReadonlySet<string>;
  /** Invites are not served at all. */
  blocksInvites: boolean;
}

export const NO_EXCLUSIONS: SyncExclusions = { ignored: new Set(), blocksInvites: false };

const CACHE_SIZE = 10_000;
/** The room id global account data is stored with (GLOBAL_ACCOUNT_DATA_ROOM of account-data.ts, which imports this). */
const GLOBAL_ACCOUNT_DATA_ROOM = '';

interface PerDb {
  cache: LruCache<string, SyncExclusions>;
  generation: Map<string, number>;
  /** Bumped when `generation` is cleared (to stay bounded): a read overlapping it is not remembered. */
  epoch: number;
}

/** Per database (one process may open several, as the tests do). */
const caches = new WeakMap<Executor, PerDb>();

function perDb(db: Executor): PerDb {
  let c = caches.get(db);
  if (!c) {
    c = { cache: new LruCache('sync_exclusions', CACHE_SIZE), generation: new Map(), epoch: 0 };
    caches.set(db, c);
  }
  return c;
}

/** Whether a write of this account data type changes a user's exclusions. */
export function affectsExclusions(roomId: string, type: string): boolean {
  return (
    roomId === GLOBAL_ACCOUNT_DATA_ROOM &&
    (type === IGNORED_USER_LIST_TYPE || type === INVITE_PERMISSION_TYPE)
  );
}

/** Forgets the user's entry; called after a write of either type has committed. */
export function forgetExclusions(db: Executor, userId: string): void {
  const c = perDb(db);
  c.cache.delete(userId);
  // Only users with a read in flight or an entry need a counter; keep the map bounded all the same.
  if (c.generation.size >= CACHE_SIZE) {
    c.generation.clear();
    c.epoch++;
  }
  c.generation.set(userId, (c.generation.get(userId) ?? 0) + 1);
}

export async function syncExclusions(db: Executor, userId: string): Promise<SyncExclusions> {
  const c = perDb(db);
  const hit = c.cache.get(userId);
  if (hit) return hit;
  const generation = c.generation.get(userId) ?? 0;
  const epoch = c.epoch;
  const rows = await db
    .selectFrom('account_data')
    .select(['type', 'content'])
    .where('user_id', '=', userId)
    .where('room_id', '=', GLOBAL_ACCOUNT_DATA_ROOM)
    .where('type', 'in', [IGNORED_USER_LIST_TYPE, INVITE_PERMISSION_TYPE])
    .execute();
  const out = { ignored: new Set<string>(), blocksInvites: false };
  for (const r of rows) {
    const content = parse(r.content);
    if (content === undefined) continue;
    if (r.type === INVITE_PERMISSION_TYPE) out.blocksInvites = content.default_action === 'block';
    else out.ignored = ignoredIn(content, userId);
  }
  const result = out.ignored.size === 0 && !out.blocksInvites ? NO_EXCLUSIONS : out;
  if (c.epoch === epoch && (c.generation.get(userId) ?? 0) === generation) c.cache.set(userId, result);
  return result;
}

function parse(json: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(json);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The user ids of `ignored_users` (keys starting with `@`); anything else in the content is ignored. */
function ignoredIn(content: Record<string, unknown>, self: string): Set<string> {
  const map = content.ignored_users;
  const out = new Set<string>();
  if (typeof map !== 'object' || map === null || Array.isArray(map)) return out;
  for (const id of Object.keys(map)) if (id.startsWith('@') && id !== self) out.add(id);
  return out;
}
