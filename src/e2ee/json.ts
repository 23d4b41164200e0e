/** Helpers for the signed JSON objects of end-to-end encryption (device keys, cross-signing keys). */
import { MatrixError } from '../api/errors.js';
import { isJsonObject } from '../util/validate.js';
import { canonicalJson } from '../rooms/canonical-json.js';
import type { JsonObject, Signatures } from '../rooms/event.js';

/** Canonical JSON of an uploaded object; a value canonical JSON cannot hold is 400 M_BAD_JSON. */
export function canonicalOrBadJson(value: unknown, what: string): string {
  try {
    return canonicalJson(value);
  } catch (err) {
    throw new MatrixError('M_BAD_JSON', `Invalid ${what}: ${(err as Error).message}`);
  }
}

/** Canonical JSON of the object without `signatures` and `unsigned`: what its signatures cover. */
export function signedPart(obj: JsonObject): string {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return canonicalJson(rest);
}

export function signaturesOf(obj: JsonObject): Signatures {
  const s = obj.signatures;
  const out: Signatures = {};
  if (!isJsonObject(s)) return out;
  for (const [user, keys] of Object.entries(s)) {
    if (!isJsonObject(keys)) continue;
    const k: Record<string, string> = {};
    for (const [id, sig] of Object.entries(keys)) if (typeof sig === 'string') k[id] = sig;
    out[user] = k;
  }
  return out;
}

/** Adds signatures to a copy of the object. */
export function withSignatures(
  obj: JsonObject,
  extra: readonly { user: string; keyId: string; signature: string }[],
): JsonObject {
  if (extra.length === 0) return obj;
  const sigs = signaturesOf(obj);
  for (const e of extra) sigs[e.user] = { ...sigs[e.user], [e.keyId]: e.signature };
  return { ...obj, signatures: sigs };
}

/** The single ed25519 public key of a cross-signing key object, or undefined. */
export function crossSigningPublicKey(key: JsonObject): string | undefined {
  if (!isJsonObject(key.keys)) return undefined;
  const entries = Object.entries(key.keys);
  if (entries.length !== 1) return undefined;
  const [id, value] = entries[0] as [string, unknown];
  if (!id.startsWith('ed25519:') || typeof value !== 'string' || id.slice(8) !== value) return undefined;
  return value;
}

export function serverOf(userId: string): string {
  const i = userId.indexOf(':');
  return i < 0 ? '' : userId.slice(i + 1);
}
