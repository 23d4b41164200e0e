/**
 * A room's head: its current state (with the PDUs, for auth checks), forward extremities and snapshot. Built from
 * committed rows only, and replaced after each commit by the writer.
 */
import type { Kysely } from 'kysely';
import type { Pdu } from '../rooms/event.js';
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
    .select(['e.event_id', 'e.event_nid', 'e.depth'])
    .where('f.room_nid', '=', roomNid)
    .execute();
  return {
    roomNid,
    roomId,
    version: getRoomVersion(room.room_version),
    snapshot: { nid: Number(room.current_snapshot_nid), chainLen: Number(snap?.chain_len ?? 0) },
    state,
    extremities: ext.map((e) => ({
      eventId: e.event_id,
      eventNid: Number(e.event_nid),
      depth: Number(e.depth),
    })),
  };
}
