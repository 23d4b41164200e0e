/**
 * Server key documents (server-server API "Retrieving server keys"), pure: the document this server publishes at
 * /_matrix/key/v2/server, and the checks on a document received from another server or through a notary.
 */
import { decodeBase64 } from '../rooms/base64.js';
import type { JsonObject } from '../rooms/event.js';
import { signJson, verifyJsonSignature } from '../rooms/signing.js';

/** Keys are trusted for at most 7 days after they were fetched, whatever valid_until_ts says (spec). */
export const MAX_KEY_VALIDITY_MS = 7 * 86_400_000;

const KEY_ID = /^ed25519:[A-Za-z0-9_]+$/;

export interface OwnKeys {
  serverName: string;
  keyId: string;
  seed: Uint8Array;
  publicKeyBase64: string;
  oldKeys: Record<string, { key: string; expired_ts: number }>;
}

/** This server's signed key document, valid until `validUntilTs`. */
export function ownKeyDocument(own: OwnKeys, validUntilTs: number): JsonObject {
  return signJson(
    {
      server_name: own.serverName,
      valid_until_ts: validUntilTs,
      verify_keys: { [own.keyId]: { key: own.publicKeyBase64 } },
      old_verify_keys: Object.fromEntries(
        Object.entries(own.oldKeys).map(([id, k]) => [id, { key: k.key, expired_ts: k.expired_ts }]),
      ),
    },
    own.serverName,
    own.keyId,
    own.seed,
  );
}

export class KeyResponseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyResponseError';
  }
}

export interface ParsedKey {
  keyId: string;
  key: string;
  /** Until when signatures by the key are accepted: capped valid_until_ts, or expired_ts for an old key. */
  validUntilTs: number;
  expiredTs: number | null;
}

export interface ParsedKeyResponse {
  serverName: string;
  /** The response's valid_until_ts, capped at 7 days after `now`. */
  validUntilTs: number;
  keys: ParsedKey[];
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const isKey = (v: unknown): v is string => typeof v === 'string' && decodeBase64(v)?.length === 32;

/**
 * Checks a key document of `serverName`: its server_name, its keys, and that it is signed by the server with at
 * least one of its verify keys, every such signature valid. Throws KeyResponseError otherwise.
 */
export function parseKeyResponse(json: unknown, serverName: string, now: number): ParsedKeyResponse {
  if (!isObject(json)) throw new KeyResponseError('key response is not an object');
  if (json['server_name'] !== serverName)
    throw new KeyResponseError(`key response is for ${String(json['server_name'])}, not ${serverName}`);
  const rawUntil = json['valid_until_ts'];
  const declared = typeof rawUntil === 'number' && Number.isSafeInteger(rawUntil) ? rawUntil : 0;
  const validUntilTs = Math.min(declared, now + MAX_KEY_VALIDITY_MS);
  const verifyKeys = isObject(json['verify_keys']) ? json['verify_keys'] : {};
  const keys: ParsedKey[] = [];
  for (const [keyId, v] of Object.entries(verifyKeys)) {
    if (!KEY_ID.test(keyId)) continue;
    const key = isObject(v) ? v['key'] : undefined;
    if (!isKey(key)) throw new KeyResponseError(`verify key ${keyId} is not an ed25519 key`);
    keys.push({ keyId, key, validUntilTs, expiredTs: null });
  }
  const signatures = isObject(json['signatures']) ? json['signatures'] : {};
  const own = isObject(signatures[serverName]) ? signatures[serverName] : {};
  let signed = false;
  for (const keyId of Object.keys(own)) {
    const key = keys.find((k) => k.keyId === keyId);
    if (!key) continue;
    if (!verifyJsonSignature(json, serverName, keyId, key.key))
      throw new KeyResponseError(`signature ${keyId} of ${serverName} on its key response is invalid`);
    signed = true;
  }
  if (!signed) throw new KeyResponseError(`key response is not signed by ${serverName} with one of its keys`);
  const oldKeys = isObject(json['old_verify_keys']) ? json['old_verify_keys'] : {};
  for (const [keyId, v] of Object.entries(oldKeys)) {
    if (!KEY_ID.test(keyId) || !isObject(v) || keys.some((k) => k.keyId === keyId)) continue;
    const expired = v['expired_ts'];
    if (!isKey(v['key']) || typeof expired !== 'number' || !Number.isSafeInteger(expired)) continue;
    keys.push({ keyId, key: v['key'], validUntilTs: expired, expiredTs: expired });
  }
  return { serverName, validUntilTs, keys };
}

/**
 * Checks a notary's signature on a key document it returned: when verify keys are configured for the notary, at
 * least one must have signed it and every such signature must be valid. Without configured keys, TLS is the check.
 */
export function checkNotarySignature(
  json: JsonObject,
  notary: string,
  verifyKeys: Record<string, string> | undefined,
): void {
  if (!verifyKeys) return;
  const signatures = isObject(json['signatures']) ? json['signatures'] : {};
  const sigs = isObject(signatures[notary]) ? signatures[notary] : {};
  let signed = false;
  for (const keyId of Object.keys(sigs)) {
    const key = verifyKeys[keyId];
    if (key === undefined) continue;
    if (!verifyJsonSignature(json, notary, keyId, key))
      throw new KeyResponseError(`signature ${keyId} of notary ${notary} is invalid`);
    signed = true;
  }
  if (!signed) throw new KeyResponseError(`notary response is not signed by ${notary} with a configured key`);
}
