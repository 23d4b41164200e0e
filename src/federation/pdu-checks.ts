/**
 * The checks a PDU received from another server passes before the room writer sees it (server-server API "Checks
 * performed on receipt of a PDU", steps 1-3): a valid event of the room version, signed by the servers that must
 * sign it (the sender's; in room versions 1 and 2 also the event id's; the authorising server of a restricted
 * join), and with a content hash that matches (else it is redacted and kept redacted).
 */
import type { JsonObject, Pdu } from '../rooms/event.js';
import { checkContentHash, computeEventId } from '../rooms/hashing.js';
import { serverNameOf } from '../rooms/identifiers.js';
import { redact } from '../rooms/redaction.js';
import type { RoomVersion } from '../rooms/room-versions.js';
import { signatureKeyIds, verifyEventSignature } from '../rooms/signing.js';
import { parsePdu } from '../rooms/validate.js';
import type { KeyRing } from './keyring.js';

export type CheckedPdu =
  | { ok: true; eventId: string; raw: Pdu; redacted: boolean }
  | { ok: false; eventId?: string; reason: string };

/** The servers whose signatures an event must carry. */
export function requiredSigners(pdu: Pdu, version: RoomVersion): Set<string> {
  const out = new Set<string>();
  const sender = serverNameOf(pdu.sender);
  if (sender) out.add(sender);
  if (version.eventIdFormat === 'v1' && typeof pdu.event_id === 'string') {
    const s = serverNameOf(pdu.event_id);
    if (s) out.add(s);
  }
  const via = pdu.content.join_authorised_via_users_server;
  if (version.restrictedJoins && pdu.type === 'm.room.member' && pdu.content.membership === 'join') {
    const s = typeof via === 'string' ? serverNameOf(via) : undefined;
    if (s) out.add(s);
  }
  return out;
}

/** Whether every required server signed the event with a key valid when it was sent (v5+) or ever. */
export async function verifySignatures(
  keyRing: Pick<KeyRing, 'getVerifyKey'>,
  raw: JsonObject,
  pdu: Pdu,
  version: RoomVersion,
): Promise<string | undefined> {
  const validAt = version.enforceKeyValidity ? pdu.origin_server_ts : 0;
  for (const server of requiredSigners(pdu, version)) {
    const keyIds = signatureKeyIds(raw, server);
    let ok = false;
    for (const keyId of keyIds) {
      const key = await keyRing.getVerifyKey(server, keyId, validAt).catch(() => null);
      if (key && verifyEventSignature(raw, version, server, keyId, key)) {
        ok = true;
        break;
      }
    }
    if (!ok) return `no valid signature of ${server}`;
  }
  return undefined;
}

/** Format, signatures and hash of a received PDU; `raw` is what to store (without `unsigned`, redacted if needed). */
export async function checkReceivedPdu(
  keyRing: Pick<KeyRing, 'getVerifyKey'>,
  input: JsonObject,
  version: RoomVersion,
): Promise<CheckedPdu> {
  const raw: JsonObject = { ...input };
  delete raw.unsigned;
  let eventId: string | undefined;
  try {
    eventId = computeEventId(raw, version);
  } catch {
    eventId = undefined;
  }
  const parsed = parsePdu(raw, version);
  if (!parsed.ok) return { ok: false, ...(eventId ? { eventId } : {}), reason: parsed.reason };
  if (!eventId) return { ok: false, reason: 'no event id' };
  const bad = await verifySignatures(keyRing, raw, parsed.pdu, version);
  if (bad) return { ok: false, eventId, reason: bad };
  if (!checkContentHash(raw)) {
    return { ok: true, eventId, raw: redact(raw, version) as unknown as Pdu, redacted: true };
  }
  return { ok: true, eventId, raw: raw as unknown as Pdu, redacted: false };
}
