/** Content hashes, reference hashes and event IDs (server-server API "Signing Events"). */

import { createHash } from 'node:crypto';

import { decodeBase64, encodeUnpaddedBase64, encodeUnpaddedBase64Url } from './base64.js';
import { canonicalJsonBytes } from './canonical-json.js';
import type { JsonObject } from './event.js';
import { redact } from './redaction.js';
import { getRoomVersion, type RoomVersion } from './room-versions.js';

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

function without(event: object, keys: readonly string[]): JsonObject {
  const copy: JsonObject = { ...(event as JsonObject) };
  for (const k of keys) delete copy[k];
  return copy;
}

/** SHA-256 over the canonical JSON of the event without `unsigned`, `signatures` and `hashes`. */
export function computeContentHash(event: object): Buffer {
  return sha256(canonicalJsonBytes(without(event, ['unsigned', 'signatures', 'hashes'])));
}

/** The content hash as stored in `hashes.sha256` (unpadded standard base64). */
export function contentHashBase64(event: object): string {
  return encodeUnpaddedBase64(computeContentHash(event));
}

/** Whether `hashes.sha256` of the event matches its content. If not, the event must be redacted. */
export function checkContentHash(event: object): boolean {
  const hashes = (event as JsonObject)['hashes'];
  if (typeof hashes !== 'object' || hashes === null) return false;
  const claimed = (hashes as JsonObject)['sha256'];
  if (typeof claimed !== 'string') return false;
  const decoded = decodeBase64(claimed);
  return decoded !== null && decoded.equals(computeContentHash(event));
}

/** Return a copy of the event with `hashes.sha256` set to its content hash. */
export function withContentHash<T extends object>(event: T): T & { hashes: { sha256: string } } {
  return { ...event, hashes: { sha256: contentHashBase64(event) } };
}

/** Reference hash: SHA-256 of the canonical JSON of the redacted event without `signatures`/`unsigned`. */
export function computeReferenceHash(event: object, version: string | RoomVersion): Buffer {
  const redacted = redact(event, version);
  delete redacted['signatures'];
  delete redacted['unsigned'];
  return sha256(canonicalJsonBytes(redacted));
}

/**
 * The event ID of an event. Room versions 1/2: the `event_id` property (throws if missing);
 * v3: `$` + unpadded base64 of the reference hash; v4+: `$` + URL-safe unpadded base64.
 */
export function computeEventId(event: object, version: string | RoomVersion): string {
  const v = getRoomVersion(version);
  switch (v.eventIdFormat) {
    case 'v1': {
      const id = (event as JsonObject)['event_id'];
      if (typeof id !== 'string') throw new Error(`Room version ${v.id} events must carry an event_id`);
      return id;
    }
    case 'v3':
      return `$${encodeUnpaddedBase64(computeReferenceHash(event, v))}`;
    case 'v4':
      return `$${encodeUnpaddedBase64Url(computeReferenceHash(event, v))}`;
  }
}

/**
 * Room ID of a room version 12+ room: the create event's event ID with the `!` sigil. The create event
 * must not carry a `room_id` (it would change the hash).
 */
export function roomIdFromCreateEvent(createEvent: object, version: string | RoomVersion = '12'): string {
  const v = getRoomVersion(version);
  if (!v.roomIdFromCreateEvent) {
    throw new Error(`Room version ${v.id} room IDs are not derived from the create event`);
  }
  return `!${computeEventId(createEvent, v).slice(1)}`;
}
