/** Verification of `content.third_party_invite` on invites (auth rule "If membership is invite", step 1). */

import { decodeBase64, decodeBase64Url } from '../base64.js';
import { canonicalJsonBytes } from '../canonical-json.js';
import type { JsonObject, Pdu } from '../event.js';
import { verifyBytes } from '../signing.js';
import { ALLOW, deny, type AuthResult, type StateLookup } from './types.js';

function asObject(v: unknown): JsonObject | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

function decodeKey(b64: unknown): Buffer | undefined {
  if (typeof b64 !== 'string') return undefined;
  return decodeBase64(b64) ?? decodeBase64Url(b64) ?? undefined;
}

/** The public keys of an `m.room.third_party_invite` event: `public_key` and `public_keys[].public_key`. */
export function thirdPartyInvitePublicKeys(content: JsonObject): Buffer[] {
  const keys: Buffer[] = [];
  const single = decodeKey(content['public_key']);
  if (single) keys.push(single);
  const list = content['public_keys'];
  if (Array.isArray(list)) {
    for (const entry of list) {
      const k = decodeKey(asObject(entry)?.['public_key']);
      if (k) keys.push(k);
    }
  }
  return keys;
}

/** Whether any signature in `signed` verifies against any of the public keys. */
export function verifySignedThirdPartyInvite(signed: JsonObject, publicKeys: readonly Buffer[]): boolean {
  const signatures = asObject(signed['signatures']);
  if (!signatures) return false;
  const payload: JsonObject = { ...signed };
  delete payload['signatures'];
  delete payload['unsigned'];
  const bytes = canonicalJsonBytes(payload);
  for (const serverSigs of Object.values(signatures)) {
    const sigs = asObject(serverSigs);
    if (!sigs) continue;
    for (const [keyId, sig] of Object.entries(sigs)) {
      if (!keyId.startsWith('ed25519:') || typeof sig !== 'string') continue;
      if (publicKeys.some((pk) => verifyBytes(bytes, sig, pk))) return true;
    }
  }
  return false;
}

/** Steps 1.2-1.8 of the invite rules for an invite carrying `content.third_party_invite`. */
export function checkThirdPartyInvite(pdu: Pdu, lookup: StateLookup): AuthResult {
  const tpi = asObject(pdu.content['third_party_invite']);
  const signed = asObject(tpi?.['signed']);
  if (!signed) return deny('The third-party invite has no signed block');
  const mxid = signed['mxid'];
  const token = signed['token'];
  if (typeof mxid !== 'string' || typeof token !== 'string') {
    return deny('The third-party invite signed block must have mxid and token');
  }
  if (mxid !== pdu.state_key) return deny('The third-party invite was issued for a different user');
  const inviteEvent = lookup('m.room.third_party_invite', token);
  if (!inviteEvent) return deny('There is no matching third-party invite in the room');
  if (inviteEvent.sender !== pdu.sender)
    return deny('Only the user who made the third-party invite may complete it');
  if (!verifySignedThirdPartyInvite(signed, thirdPartyInvitePublicKeys(inviteEvent.content))) {
    return deny('The third-party invite signature does not match the public keys of the invite');
  }
  return ALLOW;
}
