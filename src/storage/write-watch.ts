/**
 * Writes that in-memory caches must hear of, recognised by their SQL text:
 * - `auth`: writes that can revoke an access token: an update or delete of `access_tokens` or `users` (logout,
 *   deactivation, locking, admin changes, guest upgrade) or a delete of `devices` (device deletion takes its
 *   tokens). Writes that only add tokens or users cannot revoke anything and do not count.
 * - `pushers`: any write to `pushers`.
 * - `e2e_keys`: any write to `e2e_one_time_keys` or `e2e_fallback_keys` (upload, claim, repair); a device's
 *   deletion takes its keys through the foreign keys and counts as `auth`, which the keys' memo also watches.
 * - `members`: any write to `room_members` (a member event's commit, forget, repair, purge) or a delete of `rooms`
 *   (its members go with it). The frequent updates of `rooms` (a room's head) do not count.
 * - `account_data`: any write to `account_data` (global or per room, any type).
 * - `receipts`: any write to `receipts`.
 * The engines' drivers (sqlite-driver.ts, pg-driver.ts) see every statement and call noteWrite() when one runs,
 * and on PostgreSQL again when its transaction ends (the other connections see it only then). A cache keeps what
 * it read together with the generation it read it at, and drops it when the generation moved (api/auth.ts's
 * access-token cache, push/sender.ts's "any pushers?").
 */

export type WatchKind = 'auth' | 'pushers' | 'e2e_keys' | 'members' | 'account_data' | 'receipts';

const AUTH_WRITE =
  /^\s*(?:(?:update|delete\s+from)\s+"?(?:access_tokens|users)"?|delete\s+from\s+"?devices"?)[\s;(]/i;
const PUSHERS_WRITE = /^\s*(?:insert\s+into|update|delete\s+from)\s+"?pushers"?[\s;(]/i;
const E2E_KEYS_WRITE =
  /^\s*(?:insert\s+into|update|delete\s+from)\s+"?(?:e2e_one_time_keys|e2e_fallback_keys)"?[\s;(]/i;

const MEMBERS_WRITE =
  /^\s*(?:(?:insert\s+into|update|delete\s+from)\s+"?room_members"?|delete\s+from\s+"?rooms"?)[\s;(]/i;

const ACCOUNT_DATA_WRITE = /^\s*(?:insert\s+into|update|delete\s+from)\s+"?account_data"?[\s;(]/i;
const RECEIPTS_WRITE = /^\s*(?:insert\s+into|update|delete\s+from)\s+"?receipts"?[\s;(]/i;

const generations: Record<WatchKind, number> = {
  auth: 0,
  pushers: 0,
  e2e_keys: 0,
  members: 0,
  account_data: 0,
  receipts: 0,
};

/** The kinds of watched write `sqlText` is (usually none). */
export function watchedWrite(sqlText: string): WatchKind | undefined {
  if (AUTH_WRITE.test(sqlText)) return 'auth';
  if (PUSHERS_WRITE.test(sqlText)) return 'pushers';
  if (E2E_KEYS_WRITE.test(sqlText)) return 'e2e_keys';
  if (MEMBERS_WRITE.test(sqlText)) return 'members';
  if (ACCOUNT_DATA_WRITE.test(sqlText)) return 'account_data';
  if (RECEIPTS_WRITE.test(sqlText)) return 'receipts';
  return undefined;
}

export function noteWrite(kind: WatchKind): void {
  generations[kind]++;
}

/** Moves whenever a watched write of `kind` ran or committed in this process. */
export function writeGeneration(kind: WatchKind): number {
  return generations[kind];
}
