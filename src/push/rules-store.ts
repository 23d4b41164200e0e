/**
 * Where a user's push rules live: the content of their global m.push_rules account data, with the server-default
 * rules layered in on every read (default-rules.ts). Used by the push rule API, /sync, /notifications and the
 * push sender.
 */
import { LruCache } from '../cache/lru.js';
import type { Storage } from '../storage/db.js';
import { WatchedMemo } from '../storage/watched-memo.js';
import { getAccountData, GLOBAL_ACCOUNT_DATA_ROOM } from '../storage/account-data.js';
import { effectivePushRules, type PushRuleset } from './default-rules.js';

export const PUSH_RULES_TYPE = 'm.push_rules';

/** The stored JSON per user (null: none), remembered until any account data write. */
const storedJson = new WatchedMemo<string | null>('push_rules_json', ['account_data'], (v) => v);
/** The ruleset built from a user's stored JSON, reused while that JSON is the same. */
const built = new LruCache<string, { json: string | null; rules: PushRuleset }>('push_rulesets', 10_000);

/**
 * The user's complete push ruleset. It is shared between callers (asked on every /sync and for every push):
 * never change it; an editor works on a `structuredClone` of it.
 */
export async function loadPushRules(storage: Pick<Storage, 'db'>, userId: string): Promise<PushRuleset> {
  const json = await storedJson.get(
    storage.db,
    userId,
    async () => (await getAccountData(storage.db, userId, GLOBAL_ACCOUNT_DATA_ROOM, PUSH_RULES_TYPE)) ?? null,
  );
  const known = built.get(userId);
  if (known && known.json === json) return known.rules;
  const stored: unknown = json === null ? undefined : JSON.parse(json);
  const rules = deepFreeze(effectivePushRules(stored, userId));
  built.set(userId, { json, rules });
  return rules;
}

/** Freezes a JSON-like value throughout, so that a caller changing the shared ruleset fails loudly. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
