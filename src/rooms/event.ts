/** PDU and client event shapes (server-server API "PDUs", room versions 3+ format). */

import { getRoomVersion, type RoomVersion } from './room-versions.js';

export type JsonObject = Record<string, unknown>;

/** `hashes` of a PDU: `{ sha256: <unpadded base64> }`. */
export interface EventHashes {
  sha256: string;
  [algorithm: string]: string;
}

/** `signatures`: server name → key id → unpadded base64 signature. */
export type Signatures = Record<string, Record<string, string>>;

/**
 * A persistent data unit in the room version 3+ format (`auth_events`/`prev_events` are event IDs).
 * `room_id` is absent only on `m.room.create` events of room version 12+ (the room ID is derived
 * from the create event's hash). `redacts` is top-level for room versions up to 10, in `content` from
 * version 11. `event_id` only appears in room version 1/2 events (see `fromLegacyPdu`).
 */
export interface Pdu {
  auth_events: string[];
  content: JsonObject;
  depth: number;
  hashes: EventHashes;
  origin_server_ts: number;
  prev_events: string[];
  room_id?: string;
  sender: string;
  signatures: Signatures;
  state_key?: string;
  type: string;
  unsigned?: JsonObject;
  redacts?: string;
  /** Room versions 1 and 2 only. */
  event_id?: string;
  /** Legacy field some servers still send; covered by hashes but not by the redaction algorithm in v11+. */
  origin?: string;
}

/** An event reference in room versions 1/2: `[event_id, { sha256: ... }]`. */
export type LegacyEventReference = [string, Partial<EventHashes>];

/** A room version 1/2 PDU on the wire: carries `event_id`, references are `[id, hashes]` pairs. */
export interface LegacyPdu extends Omit<Pdu, 'auth_events' | 'prev_events' | 'event_id'> {
  event_id: string;
  auth_events: LegacyEventReference[];
  prev_events: LegacyEventReference[];
}

/**
 * Normalise a room version 1/2 PDU to the `Pdu` shape used by the auth rules and state resolution.
 * Only use the result for logic; hashes and signatures must be checked on the original wire form.
 */
export function fromLegacyPdu(legacy: LegacyPdu): Pdu {
  return {
    ...legacy,
    auth_events: legacy.auth_events.map((ref) => ref[0]),
    prev_events: legacy.prev_events.map((ref) => ref[0]),
  };
}

/** Client-Server API event format ("ClientEvent"). */
export interface ClientEvent {
  content: JsonObject;
  event_id: string;
  origin_server_ts: number;
  room_id: string;
  sender: string;
  state_key?: string;
  type: string;
  unsigned?: JsonObject;
  redacts?: string;
}

/** The room ID (`!...`) of a v12+ room given its create event's ID (`$...`), and back. */
export function roomIdFromCreateEventId(createEventId: string): string {
  return `!${createEventId.slice(1)}`;
}

export function createEventIdFromRoomId(roomId: string): string {
  return `$${roomId.slice(1)}`;
}

export function isStateEvent(pdu: { state_key?: unknown }): boolean {
  return typeof pdu.state_key === 'string';
}

/**
 * The event being redacted by an `m.room.redaction`: top-level `redacts` up to room version 10,
 * `content.redacts` from version 11. Without a version, either place is accepted (top level first).
 */
export function redactsOf(
  pdu: Pick<Pdu, 'redacts' | 'content'>,
  version?: string | RoomVersion,
): string | undefined {
  const top = typeof pdu.redacts === 'string' ? pdu.redacts : undefined;
  const inContent = typeof pdu.content['redacts'] === 'string' ? pdu.content['redacts'] : undefined;
  if (version === undefined) return top ?? inContent;
  return getRoomVersion(version).redactsInContent ? inContent : top;
}

/**
 * The room ID of a PDU: its `room_id`, or, for a v12+ create event (which has none), the ID derived from
 * its own event ID.
 */
export function roomIdOf(pdu: Pick<Pdu, 'room_id' | 'type'>, eventId: string): string {
  if (pdu.room_id !== undefined) return pdu.room_id;
  return roomIdFromCreateEventId(eventId);
}

/**
 * Convert a PDU to the Client-Server API format. For `m.room.redaction`, `redacts` is served both at the
 * top level and inside `content`, as the v11 room version spec asks for compatibility with old and new
 * clients.
 */
export function toClientEvent(pdu: Pdu, eventId: string): ClientEvent {
  const ev: ClientEvent = {
    content: pdu.content,
    event_id: eventId,
    origin_server_ts: pdu.origin_server_ts,
    room_id: roomIdOf(pdu, eventId),
    sender: pdu.sender,
    type: pdu.type,
  };
  if (pdu.state_key !== undefined) ev.state_key = pdu.state_key;
  if (pdu.unsigned !== undefined) ev.unsigned = pdu.unsigned;
  if (pdu.type === 'm.room.redaction') {
    const redacts = redactsOf(pdu);
    if (redacts !== undefined) {
      ev.redacts = redacts;
      if (pdu.content['redacts'] === undefined) ev.content = { ...pdu.content, redacts };
    }
  }
  return ev;
}
