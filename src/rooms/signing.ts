/** ed25519 signing and verification of JSON objects and events (appendix "Signing JSON"). */

import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';

import { decodeBase64, encodeUnpaddedBase64 } from './base64.js';
import { canonicalJsonBytes } from './canonical-json.js';
import type { JsonObject, Signatures } from './event.js';
import { redact } from './redaction.js';
import type { RoomVersion } from './room-versions.js';

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Normalise a key ID: `'1'` → `'ed25519:1'`; `'ed25519:abc'` is kept. */
export function normaliseKeyId(keyId: string): string {
  return keyId.startsWith('ed25519:') ? keyId : `ed25519:${keyId}`;
}

/** A fresh 32-byte ed25519 seed. */
export function generateSigningSeed(): Buffer {
  return randomBytes(32);
}

/** Key objects by seed: building one costs more than the signature itself (the server signs every event). */
const keyObjects = new WeakMap<Uint8Array, { bytes: string; key: KeyObject }>();

export function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new Error(`ed25519 seed must be 32 bytes, got ${seed.length}`);
  const bytes = Buffer.from(seed).toString('base64');
  const cached = keyObjects.get(seed);
  if (cached?.bytes === bytes) return cached.key;
  const key = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  keyObjects.set(seed, { bytes, key });
  return key;
}

/** The raw 32-byte public key for a seed. */
export function publicKeyFromSeed(seed: Uint8Array): Buffer {
  const der = createPublicKey(privateKeyFromSeed(seed)).export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32);
}

/** The public key for a seed as unpadded base64 (the form published in `/_matrix/key/v2/server`). */
export function publicKeyBase64FromSeed(seed: Uint8Array): string {
  return encodeUnpaddedBase64(publicKeyFromSeed(seed));
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** Sign raw bytes; returns the unpadded base64 signature. */
export function signBytes(data: Uint8Array, seed: Uint8Array): string {
  return encodeUnpaddedBase64(sign(null, data, privateKeyFromSeed(seed)));
}

/** Verify an unpadded base64 signature over raw bytes with a raw or base64 public key. */
export function verifyBytes(data: Uint8Array, signatureB64: string, publicKey: Uint8Array | string): boolean {
  const raw = typeof publicKey === 'string' ? decodeBase64(publicKey) : Buffer.from(publicKey);
  const sig = decodeBase64(signatureB64);
  if (!raw || raw.length !== 32 || !sig || sig.length !== 64) return false;
  try {
    return verify(null, data, publicKeyObject(raw), sig);
  } catch {
    return false;
  }
}

function signatureBase(obj: object): JsonObject {
  const copy: JsonObject = { ...(obj as JsonObject) };
  delete copy['signatures'];
  delete copy['unsigned'];
  return copy;
}

function existingSignatures(obj: object): Signatures {
  const s = (obj as JsonObject)['signatures'];
  if (typeof s !== 'object' || s === null || Array.isArray(s)) return {};
  const out: Signatures = {};
  for (const [server, keys] of Object.entries(s as JsonObject)) {
    if (typeof keys === 'object' && keys !== null) out[server] = { ...(keys as Record<string, string>) };
  }
  return out;
}

/**
 * Sign a JSON object: canonical JSON of the object without `signatures` and `unsigned`, signed with
 * ed25519, added under `signatures[serverName][keyId]`. Returns a new object (existing signatures and
 * `unsigned` are preserved).
 */
export function signJson<T extends object>(
  obj: T,
  serverName: string,
  keyId: string,
  seed: Uint8Array,
): T & { signatures: Signatures } {
  const signature = signBytes(canonicalJsonBytes(signatureBase(obj)), seed);
  const signatures = existingSignatures(obj);
  signatures[serverName] = { ...signatures[serverName], [normaliseKeyId(keyId)]: signature };
  return { ...obj, signatures };
}

/** Check the signature of `serverName` with `keyId` on a JSON object against a public key. */
export function verifyJsonSignature(
  obj: object,
  serverName: string,
  keyId: string,
  publicKey: Uint8Array | string,
): boolean {
  const sig = existingSignatures(obj)[serverName]?.[normaliseKeyId(keyId)];
  if (typeof sig !== 'string') return false;
  return verifyBytes(canonicalJsonBytes(signatureBase(obj)), sig, publicKey);
}

/** The ed25519 key IDs `serverName` has signed the object with. */
export function signatureKeyIds(obj: object, serverName: string): string[] {
  return Object.keys(existingSignatures(obj)[serverName] ?? {}).filter((k) => k.startsWith('ed25519:'));
}

/**
 * Sign an event: the redacted form is signed and the signature copied to the full event. The event should
 * already carry its content hash (see `withContentHash`). Returns a new object.
 */
export function signEvent<T extends object>(
  event: T,
  version: string | RoomVersion,
  serverName: string,
  keyId: string,
  seed: Uint8Array,
): T & { signatures: Signatures } {
  const signed = signJson(redact(event, version), serverName, keyId, seed);
  return { ...event, signatures: signed.signatures };
}

/** Verify a server's signature on an event (checked over the redacted form, so redacted copies pass). */
export function verifyEventSignature(
  event: object,
  version: string | RoomVersion,
  serverName: string,
  keyId: string,
  publicKey: Uint8Array | string,
): boolean {
  return verifyJsonSignature(redact(event, version), serverName, keyId, publicKey);
}
