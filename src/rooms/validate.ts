/**
 * Format checks for PDUs received over federation ("Is a valid event, otherwise it is dropped") and the
 * event size limits of the Client-Server API "Size limits" section.
 */

import { canonicalJsonBytes, checkCanonicalValue } from './canonical-json.js';
import { fromLegacyPdu, type JsonObject, type LegacyPdu, type Pdu } from './event.js';
import { isValidRoomId, isValidUserId } from './identifiers.js';
import { getRoomVersion, type RoomVersion } from './room-versions.js';

export const MAX_PDU_BYTES = 65536;
const MAX_KEY_BYTES = 255;

export type PduParseResult = { ok: true; pdu: Pdu } | { ok: false; reason: string };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

function isStringMap(v: unknown): boolean {
  return isObject(v) && Object.values(v).every((x) => typeof x === 'string');
}

/** The whole event in canonical JSON must fit in 65536 bytes; `null` if it does. */
export function checkPduSize(pdu: object): string | null {
  const size = canonicalJsonBytes(pdu).length;
  return size > MAX_PDU_BYTES ? `Event is ${size} bytes, more than the limit of ${MAX_PDU_BYTES}` : null;
}

function checkReferences(raw: JsonObject, key: string, legacy: boolean): string | null {
  const refs = raw[key];
  if (!Array.isArray(refs)) return `${key} must be an array`;
  for (const ref of refs) {
    if (legacy) {
      if (!Array.isArray(ref) || typeof ref[0] !== 'string' || !isObject(ref[1])) {
        return `${key} entries must be [event_id, hashes] pairs`;
      }
    } else if (typeof ref !== 'string' || !ref.startsWith('$')) {
      return `${key} entries must be event IDs`;
    }
  }
  return null;
}

function checkFields(raw: JsonObject, v: RoomVersion): string | null {
  const type = raw['type'];
  if (typeof type !== 'string') return 'type must be a string';
  if (bytes(type) > MAX_KEY_BYTES) return 'type is longer than 255 bytes';
  const sender = raw['sender'];
  if (typeof sender !== 'string' || !isValidUserId(sender, { historical: true }))
    return 'sender must be a user ID';
  if (!isObject(raw['content'])) return 'content must be an object';
  if (!Number.isSafeInteger(raw['origin_server_ts'])) return 'origin_server_ts must be an integer';
  const depth = raw['depth'];
  if (typeof depth !== 'number' || !Number.isInteger(depth) || depth < 0) {
    return 'depth must be a non-negative integer';
  }
  if (v.strictCanonicalJson && depth > Number.MAX_SAFE_INTEGER) return 'depth is too large';
  const hashes = raw['hashes'];
  if (!isObject(hashes) || typeof hashes['sha256'] !== 'string') return 'hashes.sha256 must be a string';
  const sigs = raw['signatures'];
  if (!isObject(sigs) || !Object.values(sigs).every(isStringMap))
    return 'signatures must map servers to key IDs';
  const stateKey = raw['state_key'];
  if (stateKey !== undefined) {
    if (typeof stateKey !== 'string') return 'state_key must be a string';
    if (bytes(stateKey) > MAX_KEY_BYTES) return 'state_key is longer than 255 bytes';
  }
  if (raw['unsigned'] !== undefined && !isObject(raw['unsigned'])) return 'unsigned must be an object';
  if (raw['redacts'] !== undefined && typeof raw['redacts'] !== 'string') return 'redacts must be a string';

  const roomId = raw['room_id'];
  const isCreate = type === 'm.room.create' && stateKey === '';
  if (v.roomIdFromCreateEvent && isCreate) {
    if (roomId !== undefined) return 'm.room.create must not have a room_id in this room version';
  } else if (
    typeof roomId !== 'string' ||
    !isValidRoomId(roomId, v.roomIdFromCreateEvent ? 'hash' : 'domain')
  ) {
    return 'room_id must be a room ID';
  }

  const legacy = v.eventIdFormat === 'v1';
  if (legacy) {
    const eventId = raw['event_id'];
    if (typeof eventId !== 'string' || !eventId.startsWith('$') || bytes(eventId) > MAX_KEY_BYTES) {
      return 'event_id must be an event ID';
    }
  }
  return checkReferences(raw, 'prev_events', legacy) ?? checkReferences(raw, 'auth_events', legacy);
}

/**
 * Check that untrusted JSON is a well-formed PDU of the room version and return it typed. Room version
 * 1/2 events are normalised with `fromLegacyPdu` (keep the raw object for hash and signature checks).
 * From room version 6 the whole event must also be valid canonical JSON (no floats, safe integers).
 */
export function parsePdu(raw: unknown, version: string | RoomVersion): PduParseResult {
  const v = getRoomVersion(version);
  if (!isObject(raw)) return { ok: false, reason: 'Event must be a JSON object' };
  const problem = checkFields(raw, v);
  if (problem) return { ok: false, reason: problem };
  if (v.strictCanonicalJson) {
    const violation = checkCanonicalValue(raw);
    if (violation) return { ok: false, reason: `${violation.path}: ${violation.reason}` };
  }
  const size = checkPduSize(raw);
  if (size) return { ok: false, reason: size };
  const pdu = v.eventIdFormat === 'v1' ? fromLegacyPdu(raw as unknown as LegacyPdu) : (raw as unknown as Pdu);
  return { ok: true, pdu };
}
