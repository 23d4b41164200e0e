/**
 * Where a user's push rules live: the content of their global m.push_rules account data, with the server-default
 * rules layered in on every read (default-rules.ts). Used by the push rule API, /sync, /notifications and the
 * push sender.
 */
import type { Storage } from '../storage/db.js';
import { getAccountData, GLOBAL_ACCOUNT_DATA_ROOM } from '../storage/account-data.js';
import { effectivePushRules, type PushRuleset } from './default-rules.js';

export const PUSH_RULES_TYPE = 'm.push_rules';

/** The user's complete push ruleset. */
export async function loadPushRules(storage: Pick<Storage, 'db'>, userId: string): Promise<PushRuleset> {
  const json = await getAccountData(storage.db, userId, GLOBAL_ACCOUNT_DATA_ROOM, PUSH_RULES_TYPE);
  const stored: unknown = json === undefined ? undefined : JSON.parse(json);
  return effectivePushRules(stored, userId);
}
