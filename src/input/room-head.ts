/**
 * A room's head: its current state (with the PDUs, for auth checks), forward extremities and snapshot. Built from
 * committed rows only, and replaced after each commit by the writer.
 */
import type { Kysely } from 'kysely';
import { encodeUnpaddedBase64 } from '../rooms/base64.js';
import type { Pdu } from '../rooms/event.js';
import { computeReferenceHash } from '../rooms/hashing.js';
import { getRoomVersion, type RoomVersion } from '../rooms/room-versions.js';
import type { Database } from '../storage/schema.js';
import { stateKey } from '../storage/state.js';

export interface StateEntry {
  eventNid: number;
  eventId: string;
  pdu: Pdu;
}

export interface Extremity {
  eventId: string;
  eventNid: number;
  depth: number;
  /** Room versions 1 and 2: the event's reference hash, cited with its id in the `prev_events` of the next one. */
  refHash?: string | undefined;
}

export interface RoomHead {
  roomNid: number;
  roomId: string;
  version: RoomVersion;
  snapshot: { nid: number; chainLen: number };
  /** `type\0state_key` → entry. */
  state: Map<string, StateEntry>;
  extremities: Extremity[];
}

export function lookupIn(state: ReadonlyMap<string, StateEntry>) {
  return (type: string, key: string): Pdu | undefined => state.get(stateKey(type, key))?.pdu;
}

/** Loads the head of a room from the database, or undefined when the room is unknown. */
export async function loadRoomHead(db: Kysely<Database>, roomId: string): Promise<RoomHead | undefined> {
  const room = await db.selectFrom('rooms').selectAll().where('room_id', '=', roomId).executeTakeFirst();
  if (!room || room.current_snapshot_nid === null) return undefined;
  const roomNid = Number(room.room_nid);
  const snap = await db
    .selectFrom('state_snapshots')
    .select(['snapshot_nid', 'chain_len'])
    .where('snapshot_nid', '=', room.current_snapshot_nid)
    .executeTakeFirst();
  const rows = await db
    .selectFrom('current_state as c')
    .innerJoin('events as e', 'e.event_nid', 'c.event_nid')
    .select(['c.type', 'c.state_key', 'e.event_nid', 'e.event_id', 'e.json'])
    .where('c.room_nid', '=', roomNid)
    .execute();
  const state = new Map<string, StateEntry>();
  for (const r of rows) {
    let pdu: Pdu;
    try {
      pdu = JSON.parse(r.json) as Pdu;
    } catch {
      continue; // damaged JSON: the doctor repairs current state; the writer works with what is readable
    }
    state.set(stateKey(r.type, r.state_key), { eventNid: Number(r.event_nid), eventId: r.event_id, pdu });
  }
  const ext = await db
    .selectFrom('forward_extremities as f')
    .innerJoin('events as e', 'e.event_nid', 'f.event_nid')
    .select(['e.event_id', 'e.event_nid', 'e.depth', 'e.json'])
    .where('f.room_nid', '=', roomNid)
    .execute();
  const version = getRoomVersion(room.room_version);
  return {
    roomNid,
    roomId,
    version,
    snapshot: { nid: Number(room.current_snapshot_nid), chainLen: Number(snap?.chain_len ?? 0) },
    state,
    extremities: ext.map((e) => ({
      eventId: e.event_id,
      eventNid: Number(e.event_nid),
      depth: Number(e.depth),
      refHash: legacyRefHash(e.json, version),
    })),
  };
}

/** The reference hash of an event of room version 1 or 2, as cited by later events; undefined otherwise. */
export function referenceHashOf(pdu: Pdu, version: RoomVersion): string | undefined {
  if (version.eventIdFormat !== 'v1') return undefined;
  return encodeUnpaddedBase64(computeReferenceHash(pdu, version));
}

function legacyRefHash(json: string, version: RoomVersion): string | undefined {
  if (version.eventIdFormat !== 'v1') return undefined;
  try {
    return referenceHashOf(JSON.parse(json) as Pdu, version);
  } catch {
    return undefined; // damaged JSON: cited with empty hashes (the doctor reports the row)
  }
}
