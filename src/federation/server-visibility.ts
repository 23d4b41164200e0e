/**
 * History visibility for a requesting server (server-server API: a server only receives what its users may see).
 * Synapse's rule, which the spec leaves to client-server "Room History Visibility": an event is visible to a server
 * when the history visibility at the event is `world_readable` or `shared`, when a user of that server is joined at
 * the event, or invited under `invited`. An event the server may not see is served redacted rather than left out, so
 * the room graph stays walkable (backfill, get_missing_events, /event); its hashes then no longer match and the
 * receiver keeps only the redacted form.
 */
import { historyVisibilityOf, membershipIn } from '../read/visibility.js';
import type { Pdu } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import { redact } from '../rooms/redaction.js';
import type { RoomVersion } from '../rooms/room-versions.js';
import type { Storage } from '../storage/db.js';
import { loadSnapshot, splitStateKey, stateKey } from '../storage/state.js';
import { eventsByNid, type StoredEvent } from '../input/state-at.js';

const HV_KEY = stateKey('m.room.history_visibility', '');

interface ServerFacts {
  visibility: string;
  /** Memberships of the server's users in the state before the event. */
  memberships: string[];
}

function allowed(facts: ServerFacts): boolean {
  if (facts.visibility === 'world_readable' || facts.visibility === 'shared') return true;
  if (facts.memberships.includes('join')) return true;
  return facts.visibility === 'invited' && facts.memberships.includes('invite');
}

/** The facts that decide visibility for `server` at each snapshot; an unreadable snapshot is absent (deny). */
async function factsAt(
  storage: Storage,
  roomNid: number,
  version: RoomVersion,
  server: string,
  snapshots: Iterable<number>,
): Promise<Map<number, ServerFacts>> {
  const keysAt = new Map<number, { hv: number | undefined; members: number[] }>();
  const wanted = new Set<number>();
  for (const snap of snapshots) {
    const loaded = await loadSnapshot(storage.db, snap, roomNid);
    if (!loaded) continue;
    const members: number[] = [];
    for (const [k, nid] of loaded.map) {
      const [type, key] = splitStateKey(k);
      if (type === 'm.room.member' && serverNameOf(key) === server) members.push(nid);
    }
    const hv = loaded.map.get(HV_KEY);
    for (const nid of hv === undefined ? members : [hv, ...members]) wanted.add(nid);
    keysAt.set(snap, { hv, members });
  }
  const events = await eventsByNid(storage.db, wanted, version);
  const out = new Map<number, ServerFacts>();
  for (const [snap, { hv, members }] of keysAt) {
    out.set(snap, {
      visibility: historyVisibilityOf(hv === undefined ? undefined : events.get(hv)?.pdu.content),
      memberships: members.map((nid) => membershipIn(events.get(nid)?.pdu.content)),
    });
  }
  return out;
}

/** Whether `server` may see `ev` given the facts before it (the event's own effect counts when it widens access). */
function visibleTo(ev: StoredEvent, before: ServerFacts | undefined, server: string): boolean {
  if (!before) return false;
  if (allowed(before)) return true;
  const { pdu } = ev;
  if (pdu.type === 'm.room.history_visibility' && pdu.state_key === '')
    return allowed({ ...before, visibility: historyVisibilityOf(pdu.content) });
  // A server sees the membership events of its own users (an invite, a kick).
  return (
    pdu.type === 'm.room.member' &&
    typeof pdu.state_key === 'string' &&
    serverNameOf(pdu.state_key) === server
  );
}

/** The wire forms of `events` for `server`: unchanged when visible, redacted otherwise. Order is kept. */
export async function eventsForServer(
  storage: Storage,
  room: { roomNid: number; version: RoomVersion },
  server: string,
  events: readonly StoredEvent[],
): Promise<Pdu[]> {
  const snapshots = new Set<number>();
  for (const ev of events)
    if (ev.row.state_snapshot_nid !== null) snapshots.add(Number(ev.row.state_snapshot_nid));
  const facts = await factsAt(storage, room.roomNid, room.version, server, snapshots);
  return events.map((ev) => {
    const snap = ev.row.state_snapshot_nid;
    const before = snap === null ? undefined : facts.get(Number(snap));
    return visibleTo(ev, before, server) ? ev.raw : (redact(ev.raw, room.version) as unknown as Pdu);
  });
}
