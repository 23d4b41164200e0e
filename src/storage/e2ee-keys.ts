/** Device keys, one-time and fallback keys, cross-signing keys and their signatures. */
import type { Executor } from './users.js';
import { WatchedMemo } from './watched-memo.js';

export async function getDeviceKeys(
  db: Executor,
  userId: string,
  deviceId: string,
): Promise<string | undefined> {
  const row = await db
    .selectFrom('e2e_device_keys')
    .select('key_json')
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .executeTakeFirst();
  return row?.key_json;
}

export async function setDeviceKeys(
  db: Executor,
  userId: string,
  deviceId: string,
  keyJson: string,
  ts: number,
): Promise<void> {
  await db
    .insertInto('e2e_device_keys')
    .values({ user_id: userId, device_id: deviceId, key_json: keyJson, ts })
    .onConflict((oc) => oc.columns(['user_id', 'device_id']).doUpdateSet({ key_json: keyJson, ts }))
    .execute();
}

export interface DeviceKeysRow {
  user_id: string;
  device_id: string;
  display_name: string | null;
  key_json: string;
}

/** The uploaded keys of the users' devices (all devices of a user when its list is empty). */
export async function listDeviceKeys(
  db: Executor,
  userId: string,
  deviceIds: readonly string[],
): Promise<DeviceKeysRow[]> {
  let q = db
    .selectFrom('e2e_device_keys as k')
    .innerJoin('devices as d', (j) =>
      j.onRef('d.user_id', '=', 'k.user_id').onRef('d.device_id', '=', 'k.device_id'),
    )
    .select(['k.user_id', 'k.device_id', 'd.display_name', 'k.key_json'])
    .where('k.user_id', '=', userId);
  if (deviceIds.length) q = q.where('k.device_id', 'in', deviceIds);
  return q.orderBy('k.device_id').execute();
}

export async function getOneTimeKeys(
  db: Executor,
  userId: string,
  deviceId: string,
): Promise<Map<string, string>> {
  const rows = await db
    .selectFrom('e2e_one_time_keys')
    .select(['algorithm', 'key_id', 'key_json'])
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .execute();
  return new Map(rows.map((r) => [`${r.algorithm}:${r.key_id}`, r.key_json]));
}

export interface NewKey {
  algorithm: string;
  keyId: string;
  json: string;
}

export async function insertOneTimeKeys(
  db: Executor,
  userId: string,
  deviceId: string,
  keys: readonly NewKey[],
  ts: number,
): Promise<void> {
  for (let i = 0; i < keys.length; i += 200) {
    await db
      .insertInto('e2e_one_time_keys')
      .values(
        keys.slice(i, i + 200).map((k) => ({
          user_id: userId,
          device_id: deviceId,
          algorithm: k.algorithm,
          key_id: k.keyId,
          key_json: k.json,
          ts,
        })),
      )
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
}

/** Counts and fallback key types per device, asked on every /sync: remembered until a key or device write. */
const keyCounts = new WatchedMemo<Record<string, number>>('e2e_key_counts', ['e2e_keys', 'auth'], (v) => ({
  ...v,
}));
const fallbackTypes = new WatchedMemo<string[]>('e2e_fallback_types', ['e2e_keys', 'auth'], (v) => [...v]);
const deviceKey = (userId: string, deviceId: string) => `${userId}\u0000${deviceId}`;

export function countOneTimeKeys(
  db: Executor,
  userId: string,
  deviceId: string,
): Promise<Record<string, number>> {
  return keyCounts.get(db, deviceKey(userId, deviceId), () => readKeyCounts(db, userId, deviceId));
}

async function readKeyCounts(
  db: Executor,
  userId: string,
  deviceId: string,
): Promise<Record<string, number>> {
  const rows = await db
    .selectFrom('e2e_one_time_keys')
    .select(['algorithm', (eb) => eb.fn.countAll<number | string>().as('n')])
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .groupBy('algorithm')
    .execute();
  const out: Record<string, number> = {};
  for (const r of rows) out[r.algorithm] = Number(r.n);
  return out;
}

/** Stores fallback keys; a key that is not the stored one (same id and content) is new and unused. */
export async function setFallbackKeys(
  db: Executor,
  userId: string,
  deviceId: string,
  keys: readonly NewKey[],
): Promise<void> {
  for (const k of keys) {
    const old = await db
      .selectFrom('e2e_fallback_keys')
      .select(['key_id', 'key_json'])
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('algorithm', '=', k.algorithm)
      .executeTakeFirst();
    if (old && old.key_id === k.keyId && old.key_json === k.json) continue;
    await db
      .insertInto('e2e_fallback_keys')
      .values({
        user_id: userId,
        device_id: deviceId,
        algorithm: k.algorithm,
        key_id: k.keyId,
        key_json: k.json,
        used: 0,
      })
      .onConflict((oc) =>
        oc
          .columns(['user_id', 'device_id', 'algorithm'])
          .doUpdateSet({ key_id: k.keyId, key_json: k.json, used: 0 }),
      )
      .execute();
  }
}

export function unusedFallbackKeyTypes(db: Executor, userId: string, deviceId: string): Promise<string[]> {
  return fallbackTypes.get(db, deviceKey(userId, deviceId), () => readFallbackTypes(db, userId, deviceId));
}

async function readFallbackTypes(db: Executor, userId: string, deviceId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('e2e_fallback_keys')
    .select('algorithm')
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .where('used', '=', 0)
    .orderBy('algorithm')
    .execute();
  return rows.map((r) => r.algorithm);
}

/**
 * Takes one one-time key of the algorithm off the device, or else its fallback key (marked used, not removed).
 * Atomic without locks: the DELETE of the chosen key succeeds for one claimer only; a loser picks another.
 */
export async function claimKey(
  db: Executor,
  userId: string,
  deviceId: string,
  algorithm: string,
): Promise<{ keyId: string; json: string } | undefined> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const candidate = await db
      .selectFrom('e2e_one_time_keys')
      .select(['key_id', 'key_json'])
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('algorithm', '=', algorithm)
      .orderBy('ts')
      .orderBy('key_id')
      .limit(1)
      .executeTakeFirst();
    if (!candidate) break;
    const res = await db
      .deleteFrom('e2e_one_time_keys')
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('algorithm', '=', algorithm)
      .where('key_id', '=', candidate.key_id)
      .executeTakeFirst();
    if (Number(res.numDeletedRows) === 1) return { keyId: candidate.key_id, json: candidate.key_json };
  }
  const fallback = await db
    .selectFrom('e2e_fallback_keys')
    .select(['key_id', 'key_json', 'used'])
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .where('algorithm', '=', algorithm)
    .executeTakeFirst();
  if (!fallback) return undefined;
  if (fallback.used === 0) {
    await db
      .updateTable('e2e_fallback_keys')
      .set({ used: 1 })
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('algorithm', '=', algorithm)
      .where('key_id', '=', fallback.key_id)
      .execute();
  }
  return { keyId: fallback.key_id, json: fallback.key_json };
}

export type CrossSigningKeyType = 'master' | 'self_signing' | 'user_signing';

export interface CrossSigningKeyRow {
  user_id: string;
  key_type: string;
  public_key: string;
  key_json: string;
}

export async function getCrossSigningKeys(
  db: Executor,
  userIds: readonly string[],
): Promise<CrossSigningKeyRow[]> {
  if (userIds.length === 0) return [];
  return db.selectFrom('e2e_cross_signing_keys').selectAll().where('user_id', 'in', userIds).execute();
}

export async function setCrossSigningKey(
  db: Executor,
  userId: string,
  keyType: CrossSigningKeyType,
  publicKey: string,
  keyJson: string,
): Promise<void> {
  await db
    .insertInto('e2e_cross_signing_keys')
    .values({ user_id: userId, key_type: keyType, public_key: publicKey, key_json: keyJson })
    .onConflict((oc) =>
      oc.columns(['user_id', 'key_type']).doUpdateSet({ public_key: publicKey, key_json: keyJson }),
    )
    .execute();
}

export interface SignatureRow {
  signer_user_id: string;
  signer_key_id: string;
  target_user_id: string;
  target_key_id: string;
  signature: string;
}

export async function storeSignatures(db: Executor, rows: readonly SignatureRow[]): Promise<void> {
  for (const r of rows) {
    await db
      .insertInto('e2e_signatures')
      .values(r)
      .onConflict((oc) =>
        oc
          .columns(['target_user_id', 'target_key_id', 'signer_user_id', 'signer_key_id'])
          .doUpdateSet({ signature: r.signature }),
      )
      .execute();
  }
}

/** Signatures of a user's keys made by the user themself or by `viewer`. */
export async function signaturesOf(
  db: Executor,
  targetUserId: string,
  viewer: string,
): Promise<SignatureRow[]> {
  return db
    .selectFrom('e2e_signatures')
    .selectAll()
    .where('target_user_id', '=', targetUserId)
    .where('signer_user_id', 'in', [targetUserId, viewer])
    .execute();
}
