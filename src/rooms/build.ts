/** Building new, hashed and signed PDUs. */

import type { JsonObject, Pdu } from './event.js';
import { computeEventId, withContentHash } from './hashing.js';
import { getRoomVersion, type RoomVersion } from './room-versions.js';
import { signEvent } from './signing.js';

/** Everything of a PDU except `hashes` and `signatures`, which `buildEvent` fills in. */
export interface EventTemplate {
  type: string;
  content: JsonObject;
  sender: string;
  /** Omit for the `m.room.create` event of room version 12+. */
  room_id?: string;
  state_key?: string;
  prev_events: string[];
  auth_events: string[];
  depth: number;
  origin_server_ts: number;
  /** For `m.room.redaction`; placed top-level (v1-v10) or in `content` (v11+) as the version requires. */
  redacts?: string;
  unsigned?: JsonObject;
  /** Room versions 1 and 2 only, where it is required: the event's own `$opaque:server` id. */
  event_id?: string;
  /**
   * Room versions 1 and 2 only: reference hashes (unpadded base64 sha256) of the cited prev/auth events, by event
   * id, sent as `[event_id, { sha256 }]` references. A cited event without one is sent with empty hashes.
   */
  reference_hashes?: ReadonlyMap<string, string>;
}

export interface SigningContext {
  roomVersion: string | RoomVersion;
  serverName: string;
  /** `ed25519:<id>` or just `<id>`. */
  keyId: string;
  /** The 32-byte ed25519 seed. */
  seed: Uint8Array;
}

export interface BuiltEvent {
  pdu: Pdu;
  eventId: string;
}

/**
 * Fill in the content hash and the server's signature, and compute the event ID. In room versions 1 and 2 the
 * event carries the `event_id` the caller chose and cites other events as `[event_id, { sha256 }]` pairs: the
 * returned `pdu` is that wire form (what is hashed, signed and stored).
 */
export function buildEvent(template: EventTemplate, ctx: SigningContext): BuiltEvent {
  const version = getRoomVersion(ctx.roomVersion);
  const legacy = version.eventIdFormat === 'v1';
  if (legacy && template.event_id === undefined) {
    throw new Error(`Events of room version ${version.id} need an event_id ($opaque:server)`);
  }
  const isCreate = template.type === 'm.room.create' && template.state_key === '';
  if (version.roomIdFromCreateEvent && isCreate && template.room_id !== undefined) {
    throw new Error(`m.room.create events in room version ${version.id} must not have a room_id`);
  }
  if (template.room_id === undefined && !(version.roomIdFromCreateEvent && isCreate)) {
    throw new Error('room_id is required');
  }

  const base: JsonObject = {
    auth_events: [...template.auth_events],
    content: { ...template.content },
    depth: template.depth,
    origin_server_ts: template.origin_server_ts,
    prev_events: [...template.prev_events],
    sender: template.sender,
    type: template.type,
  };
  if (template.room_id !== undefined) base['room_id'] = template.room_id;
  if (legacy) {
    const hashes = template.reference_hashes;
    const ref = (id: string): [string, Record<string, string>] => {
      const sha256 = hashes?.get(id);
      return [id, sha256 !== undefined ? { sha256 } : {}];
    };
    base['event_id'] = template.event_id;
    base['prev_events'] = template.prev_events.map(ref);
    base['auth_events'] = template.auth_events.map(ref);
  }
  if (template.state_key !== undefined) base['state_key'] = template.state_key;

  if (template.type === 'm.room.redaction') {
    const content = base['content'] as JsonObject;
    const redacts =
      template.redacts ?? (typeof content['redacts'] === 'string' ? content['redacts'] : undefined);
    if (redacts !== undefined) {
      if (version.redactsInContent) content['redacts'] = redacts;
      else base['redacts'] = redacts;
    }
  } else if (template.redacts !== undefined) {
    base['redacts'] = template.redacts;
  }

  const hashed = withContentHash(base);
  const signed = signEvent(hashed, version, ctx.serverName, ctx.keyId, ctx.seed);
  const pdu = signed as unknown as Pdu;
  const eventId = computeEventId(pdu, version);
  if (template.unsigned !== undefined) pdu.unsigned = { ...template.unsigned };
  return { pdu, eventId };
}
