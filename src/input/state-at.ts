/**
 * The state at events of the stored graph: the state after an event (its snapshot plus itself when it is an accepted
 * state event) and the resolution of several such states (state resolution of the room version, over events read
 * from the database with their auth chains). Reads only; the writer calls these inside its room queue.
 */
import type { LegacyPdu, Pdu } from '../rooms/event.js';
import { fromLegacyPdu } from '../rooms/event.js';
import type { RoomVersion } from '../rooms/room-versions.js';
import { resolveState, stateMapKey, parseStateMapKey } from '../rooms/state-res/index.js';
import type { EventRow } from '../storage/events.js';
import { loadSnapshot, stateKey, splitStateKey, type StateMapNids } from '../storage/state.js';
import type { Executor } from '../storage/users.js';

/** A stored event with its PDU as the rules read it (room versions 1 and 2: references reduced to ids). */
export interface StoredEvent {
  row: EventRow;
  nid: number;
  eventId: string;
  /** The stored (wire) form. */
  raw: Pdu;
  /** The form the authorization rules and state resolution read. */
  pdu: Pdu;
}

/** The PDU the authorization rules read: room versions 1 and 2 cite events as `[id, hashes]` on the wire. */
export function forRules(pdu: Pdu, version: RoomVersion): Pdu {
  return version.eventIdFormat === 'v1' ? fromLegacyPdu(pdu as unknown as LegacyPdu) : pdu;
}

function toStored(row: EventRow, version: RoomVersion): StoredEvent | undefined {
  let raw: Pdu;
  try {
    raw = JSON.parse(row.json) as Pdu;
  } catch {
    return undefined; // damaged JSON: treated as unknown (the doctor reports it)
  }
  return { row, nid: Number(row.event_nid), eventId: row.event_id, raw, pdu: forRules(raw, version) };
}

/** Events of a room by id (absent ids are left out). */
export async function eventsById(
  db: Executor,
  roomNid: number,
  ids: Iterable<string>,
  version: RoomVersion,
): Promise<Map<string, StoredEvent>> {
  const list = [...new Set(ids)];
  const out = new Map<string, StoredEvent>();
  for (let i = 0; i < list.length; i += 500) {
    const rows = await db
      .selectFrom('events')
      .selectAll()
      .where('room_nid', '=', roomNid)
      .where('event_id', 'in', list.slice(i, i + 500))
      .execute();
    for (const r of rows) {
      const ev = toStored(r, version);
      if (ev) out.set(ev.eventId, ev);
    }
  }
  return out;
}

/** Events by nid (absent nids are left out). */
export async function eventsByNid(
  db: Executor,
  nids: Iterable<number>,
  version: RoomVersion,
): Promise<Map<number, StoredEvent>> {
  const list = [...new Set(nids)];
  const out = new Map<number, StoredEvent>();
  for (let i = 0; i < list.length; i += 500) {
    const rows = await db
      .selectFrom('events')
      .selectAll()
      .where('event_nid', 'in', list.slice(i, i + 500))
      .execute();
    for (const r of rows) {
      const ev = toStored(r, version);
      if (ev) out.set(ev.nid, ev);
    }
  }
  return out;
}

/**
 * The state after a stored event: the state before it plus itself when it is a state event that was not rejected.
 * Undefined when the state before it is unknown (an outlier).
 */
export async function stateAfter(db: Executor, ev: StoredEvent): Promise<StateMapNids | undefined> {
  if (ev.row.state_snapshot_nid === null) return undefined;
  const snap = await loadSnapshot(db, Number(ev.row.state_snapshot_nid), Number(ev.row.room_nid));
  if (!snap) return undefined;
  const map = new Map(snap.map);
  if (typeof ev.pdu.state_key === 'string' && ev.row.rejected_reason === null)
    map.set(stateKey(ev.pdu.type, ev.pdu.state_key), ev.nid);
  return map;
}

/** Every event reachable through auth_events from `ids` (and `ids` themselves), read from the room's rows. */
async function withAuthChains(
  db: Executor,
  roomNid: number,
  known: Map<string, StoredEvent>,
  version: RoomVersion,
): Promise<void> {
  let frontier = [...known.values()].flatMap((e) => e.pdu.auth_events).filter((id) => !known.has(id));
  const missing = new Set<string>();
  while (frontier.length > 0) {
    const found = await eventsById(db, roomNid, frontier, version);
    for (const id of frontier) if (!found.has(id)) missing.add(id);
    const next: string[] = [];
    for (const ev of found.values()) {
      known.set(ev.eventId, ev);
      for (const a of ev.pdu.auth_events) if (!known.has(a) && !missing.has(a)) next.push(a);
    }
    frontier = [...new Set(next)];
  }
}

/**
 * The resolution of several states (`type\0state_key` → event nid) by the room version's algorithm. One state is
 * returned as is; identical states short-cut the resolution.
 */
export async function resolveStates(
  db: Executor,
  roomNid: number,
  version: RoomVersion,
  states: readonly StateMapNids[],
): Promise<StateMapNids> {
  const first = states[0];
  if (!first) return new Map();
  if (states.every((s) => sameState(s, first))) return new Map(first);
  const nids = new Set<number>();
  for (const s of states) for (const n of s.values()) nids.add(n);
  const byNid = await eventsByNid(db, nids, version);
  const known = new Map<string, StoredEvent>();
  for (const ev of byNid.values()) known.set(ev.eventId, ev);
  await withAuthChains(db, roomNid, known, version);
  const sets = states.map((s) => {
    const m = new Map<string, string>();
    for (const [k, nid] of s) {
      const ev = byNid.get(nid);
      if (!ev) continue;
      const [type, key] = splitStateKey(k);
      m.set(stateMapKey(type, key), ev.eventId);
    }
    return m;
  });
  const resolved = resolveState(version, sets, (id) => known.get(id)?.pdu, {
    isRejected: (id) => known.get(id)?.row.rejected_reason != null,
  });
  const out: StateMapNids = new Map();
  for (const [k, id] of resolved) {
    const ev = known.get(id);
    if (!ev) continue;
    const [type, key] = parseStateMapKey(k);
    out.set(stateKey(type, key), ev.nid);
  }
  return out;
}

export function sameState(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** A lookup for the authorization rules over a state of stored events. */
export function lookupState(
  state: ReadonlyMap<string, number>,
  events: ReadonlyMap<number, StoredEvent>,
): (type: string, key: string) => Pdu | undefined {
  return (type, key) => {
    const nid = state.get(stateKey(type, key));
    return nid === undefined ? undefined : events.get(nid)?.pdu;
  };
}
