/**
 * Cross-signing (client-server API "Cross-signing"): uploading the master, self-signing and user-signing keys, and
 * uploading signatures of devices and keys. Every signature is verified before it is stored.
 */
import { MatrixError } from '../api/errors.js';
import { isJsonObject } from '../util/validate.js';
import type { JsonObject } from '../rooms/event.js';
import { verifyJsonSignature } from '../rooms/signing.js';
import {
  getCrossSigningKeys,
  listDeviceKeys,
  setCrossSigningKey,
  storeSignatures,
  type CrossSigningKeyType,
  type SignatureRow,
} from '../storage/e2ee-keys.js';
import { withDeviceListChange, type E2eeDeps } from './device-lists.js';
import { canonicalOrBadJson, crossSigningPublicKey, signaturesOf, signedPart } from './json.js';

export interface SigningKeysUpload {
  master_key?: JsonObject | undefined;
  self_signing_key?: JsonObject | undefined;
  user_signing_key?: JsonObject | undefined;
}

const FIELDS: readonly [keyof SigningKeysUpload, CrossSigningKeyType][] = [
  ['master_key', 'master'],
  ['self_signing_key', 'self_signing'],
  ['user_signing_key', 'user_signing'],
];

/** The user's stored cross-signing keys by type. */
export async function storedCrossSigningKeys(
  db: E2eeDeps['storage']['db'],
  userId: string,
): Promise<Map<string, { publicKey: string; key: JsonObject }>> {
  const rows = await getCrossSigningKeys(db, [userId]);
  return new Map(
    rows.map((r) => [r.key_type, { publicKey: r.public_key, key: JSON.parse(r.key_json) as JsonObject }]),
  );
}

/** Whether the upload would replace a stored key with a different one (which needs UIA, as in Synapse). */
export async function replacesKeys(
  deps: E2eeDeps,
  userId: string,
  body: SigningKeysUpload,
): Promise<boolean> {
  const stored = await storedCrossSigningKeys(deps.storage.db, userId);
  if (!stored.has('master')) return false;
  for (const [field, type] of FIELDS) {
    const key = body[field];
    if (!key) continue;
    const old = stored.get(type);
    if (!old || crossSigningPublicKey(key) !== old.publicKey) return true;
  }
  return false;
}

function checkKey(key: JsonObject, userId: string, usage: CrossSigningKeyType, signer?: string): string {
  if (key.user_id !== userId)
    throw new MatrixError('M_INVALID_PARAM', `The ${usage} key is for another user`);
  if (!Array.isArray(key.usage) || !key.usage.includes(usage))
    throw new MatrixError('M_INVALID_PARAM', `The ${usage} key does not have usage ${usage}`);
  const pub = crossSigningPublicKey(key);
  if (!pub) throw new MatrixError('M_INVALID_PARAM', `The ${usage} key must have exactly one ed25519 key`);
  if (signer !== undefined && !verifyJsonSignature(key, userId, `ed25519:${signer}`, signer))
    throw new MatrixError('M_INVALID_SIGNATURE', `The ${usage} key is not signed by the master key`);
  return pub;
}

/** POST /keys/device_signing/upload (after UIA when needed). */
export async function uploadSigningKeys(
  deps: E2eeDeps,
  userId: string,
  body: SigningKeysUpload,
): Promise<void> {
  const stored = await storedCrossSigningKeys(deps.storage.db, userId);
  const masterPub = body.master_key
    ? checkKey(body.master_key, userId, 'master')
    : stored.get('master')?.publicKey;
  if (masterPub === undefined) throw new MatrixError('M_MISSING_PARAM', 'No master key available');
  const toStore: { type: CrossSigningKeyType; pub: string; json: string }[] = [];
  for (const [field, type] of FIELDS) {
    const key = body[field];
    if (!key) continue;
    const pub = checkKey(key, userId, type, type === 'master' ? undefined : masterPub);
    toStore.push({ type, pub, json: canonicalOrBadJson(key, field) });
  }
  if (toStore.length === 0) return;
  const onlySelf = toStore.every((k) => k.type === 'user_signing');
  await withDeviceListChange(deps, userId, onlySelf, async (trx) => {
    for (const k of toStore) await setCrossSigningKey(trx, userId, k.type, k.pub, k.json);
  });
}

interface Failure {
  status: number;
  errcode: string;
  message: string;
}

const fail = (errcode: string, message: string, status = 400): Failure => ({ status, errcode, message });

/** The uploaded object must be the stored one plus signatures. */
function sameKey(uploaded: JsonObject, stored: JsonObject): boolean {
  try {
    return signedPart(uploaded) === signedPart(stored);
  } catch {
    return false;
  }
}

/** POST /keys/signatures/upload: stores the valid signatures and reports the others per user and key. */
export async function uploadSignatures(
  deps: E2eeDeps,
  userId: string,
  body: Record<string, unknown>,
): Promise<{ failures: Record<string, Record<string, Failure>> }> {
  const { db } = deps.storage;
  const failures: Record<string, Record<string, Failure>> = {};
  const ownRows: SignatureRow[] = [];
  const otherRows: SignatureRow[] = [];
  const mine = await storedCrossSigningKeys(db, userId);
  const masterPub = mine.get('master')?.publicKey;
  const sskPub = mine.get('self_signing')?.publicKey;
  const uskPub = mine.get('user_signing')?.publicKey;

  for (const [targetUser, keys] of Object.entries(body)) {
    if (!isJsonObject(keys)) throw new MatrixError('M_INVALID_PARAM', `Invalid signatures for ${targetUser}`);
    const devices =
      targetUser === userId
        ? new Map(
            (await listDeviceKeys(db, userId, [])).map((d) => [
              d.device_id,
              JSON.parse(d.key_json) as JsonObject,
            ]),
          )
        : new Map<string, JsonObject>();
    const theirs = targetUser === userId ? mine : await storedCrossSigningKeys(db, targetUser);
    for (const [keyId, obj] of Object.entries(keys)) {
      if (!isJsonObject(obj))
        throw new MatrixError('M_INVALID_PARAM', `Invalid signed key ${targetUser} ${keyId}`);
      const f = checkSignedKey(obj);
      const record = (failure: Failure): void => {
        (failures[targetUser] ??= {})[keyId] = failure;
      };
      if (f) {
        record(f);
        continue;
      }
      const sigs = signaturesOf(obj)[userId] ?? {};
      if (targetUser === userId && keyId === masterPub) {
        // The master key signed by one of the user's devices.
        const master = mine.get('master')?.key;
        if (!master || !sameKey(obj, master)) {
          record(fail('M_INVALID_PARAM', 'The signed master key does not match the stored one'));
          continue;
        }
        let stored = 0;
        for (const [signerKeyId, signature] of Object.entries(sigs)) {
          const device = devices.get(signerKeyId.replace(/^ed25519:/, ''));
          const edKey = device && isJsonObject(device.keys) ? device.keys[signerKeyId] : undefined;
          if (typeof edKey !== 'string') continue;
          if (!verifyJsonSignature(obj, userId, signerKeyId, edKey)) {
            record(fail('M_INVALID_SIGNATURE', 'Invalid signature'));
            stored = -1;
            break;
          }
          ownRows.push({
            signer_user_id: userId,
            signer_key_id: signerKeyId,
            target_user_id: userId,
            target_key_id: keyId,
            signature,
          });
          stored++;
        }
        if (stored === 0) record(fail('M_INVALID_SIGNATURE', 'No signature by a known device of the user'));
        continue;
      }
      if (targetUser === userId) {
        // One of the user's devices signed by their self-signing key.
        if (!sskPub) {
          record(fail('M_NOT_FOUND', 'No self-signing key', 404));
          continue;
        }
        const device = devices.get(keyId);
        if (!device) {
          record(fail('M_NOT_FOUND', 'Unknown device', 404));
          continue;
        }
        if (!sameKey(obj, device)) {
          record(fail('M_INVALID_PARAM', 'The signed device keys do not match the stored ones'));
          continue;
        }
        const signature = sigs[`ed25519:${sskPub}`];
        if (!signature || !verifyJsonSignature(obj, userId, `ed25519:${sskPub}`, sskPub)) {
          record(fail('M_INVALID_SIGNATURE', 'Invalid signature'));
          continue;
        }
        ownRows.push({
          signer_user_id: userId,
          signer_key_id: `ed25519:${sskPub}`,
          target_user_id: userId,
          target_key_id: keyId,
          signature,
        });
        continue;
      }
      // Another user's master key signed by the user's user-signing key.
      if (!uskPub) {
        record(fail('M_NOT_FOUND', 'No user-signing key', 404));
        continue;
      }
      const theirMaster = theirs.get('master');
      if (!theirMaster || theirMaster.publicKey !== keyId) {
        record(fail('M_NOT_FOUND', 'Only master keys of other users can be signed', 404));
        continue;
      }
      if (!sameKey(obj, theirMaster.key)) {
        record(fail('M_INVALID_PARAM', 'The signed master key does not match the stored one'));
        continue;
      }
      const signature = sigs[`ed25519:${uskPub}`];
      if (!signature || !verifyJsonSignature(obj, userId, `ed25519:${uskPub}`, uskPub)) {
        record(fail('M_INVALID_SIGNATURE', 'Invalid signature'));
        continue;
      }
      otherRows.push({
        signer_user_id: userId,
        signer_key_id: `ed25519:${uskPub}`,
        target_user_id: targetUser,
        target_key_id: keyId,
        signature,
      });
    }
  }
  if (ownRows.length) await withDeviceListChange(deps, userId, false, (trx) => storeSignatures(trx, ownRows));
  if (otherRows.length)
    await withDeviceListChange(deps, userId, true, (trx) => storeSignatures(trx, otherRows));
  return { failures };
}

function checkSignedKey(obj: JsonObject): Failure | undefined {
  if (!isJsonObject(obj.signatures)) return fail('M_INVALID_SIGNATURE', 'No signatures');
  return undefined;
}
