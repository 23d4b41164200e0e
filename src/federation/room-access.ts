/**
 * What the resident side of federation reads about a room: whether a server may read it (a member of that server is
 * joined, or the history is world_readable), m.room.server_acl, the servers in the room, the state before an event
 * and auth chains, membership event templates for make_join/make_leave, and graph walks for get_missing_events and
 * backfill. Reads committed rows only.
 */
import { MatrixError } from '../api/errors.js';
import { lookupIn, referenceHashOf, type RoomHead } from '../input/room-head.js';
import { eventsById, eventsByNid, type StoredEvent } from '../input/state-at.js';
import { authEventTypesFor } from '../rooms/auth/auth-events.js';
import type { JsonObject, Pdu } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import type { Storage } from '../storage/db.js';
import { loadSnapshot, stateKey } from '../storage/state.js';

/** Servers with a joined member in the room's current state. */
export function serversInRoom(head: RoomHead): Set<string> {
  const out = new Set<string>();
  for (const e of head.state.values()) {
    if (e.pdu.type !== 'm.room.member' || e.pdu.content.membership !== 'join') continue;
    const s = e.pdu.state_key ? serverNameOf(e.pdu.state_key) : undefined;
    if (s) out.add(s);
  }
  return out;
}

function globMatch(glob: string, value: string): boolean {
  const re = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(value);
}

/** Whether m.room.server_acl of the current state allows `server` (server-server API "Server Access Control Lists"). */
export function aclAllows(head: RoomHead, server: string): boolean {
  const acl = lookupIn(head.state)('m.room.server_acl', '')?.content;
  if (!acl) return true;
  const host = server.replace(/:\d+$/, '');
  const isIpLiteral = /^\[.*\]$/.test(host) || /^\d+\.\d+\.\d+\.\d+$/.test(host);
  if (isIpLiteral && acl.allow_ip_literals === false) return false;
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x) => typeof x === 'string') : []);
  if (list(acl.deny).some((g) => globMatch(g, host))) return false;
  return list(acl.allow).some((g) => globMatch(g, host));
}

/** Throws 403 when the room's server ACL denies `origin`. */
export function requireAclAllows(head: RoomHead, origin: string): void {
  if (!aclAllows(head, origin)) throw new MatrixError('M_FORBIDDEN', 'Server is banned from this room');
}

/** Throws unless `origin` may read the room: ACL, and a joined member or world_readable history. */
export function requireMayRead(head: RoomHead, origin: string): void {
  requireAclAllows(head, origin);
  if (serversInRoom(head).has(origin)) return;
  if (lookupIn(head.state)('m.room.history_visibility', '')?.content.history_visibility === 'world_readable')
    return;
  throw new MatrixError('M_FORBIDDEN', `${origin} is not in room ${head.roomId}`);
}

/** A stored, not rejected event of the room, or 404. */
export async function roomEvent(storage: Storage, head: RoomHead, eventId: string): Promise<StoredEvent> {
  const ev = (await eventsById(storage.db, head.roomNid, [eventId], head.version)).get(eventId);
  if (!ev || ev.row.rejected_reason !== null)
    throw new MatrixError('M_NOT_FOUND', `Unknown event ${eventId}`);
  return ev;
}

/** The state before a stored event (its snapshot); 404 for an event whose state is unknown. */
export async function stateBefore(storage: Storage, head: RoomHead, ev: StoredEvent): Promise<StoredEvent[]> {
  if (ev.row.state_snapshot_nid === null)
    throw new MatrixError('M_NOT_FOUND', `The state at ${ev.eventId} is not known`);
  const snap = await loadSnapshot(storage.db, Number(ev.row.state_snapshot_nid), head.roomNid);
  const events = await eventsByNid(storage.db, snap?.map.values() ?? [], head.version);
  return [...events.values()];
}

/** Every event reachable through auth_events from `from` (not including them). */
export async function authChain(
  storage: Storage,
  head: RoomHead,
  from: readonly Pdu[],
): Promise<StoredEvent[]> {
  const seen = new Map<string, StoredEvent>();
  let frontier = [...new Set(from.flatMap((p) => p.auth_events))];
  while (frontier.length) {
    const found = await eventsById(storage.db, head.roomNid, frontier, head.version);
    const next: string[] = [];
    for (const ev of found.values()) {
      if (seen.has(ev.eventId)) continue;
      seen.set(ev.eventId, ev);
      for (const a of ev.pdu.auth_events) if (!seen.has(a)) next.push(a);
    }
    frontier = [...new Set(next)].filter((id) => !seen.has(id));
  }
  return [...seen.values()];
}

/** A membership event template over the room's current state (make_join, make_leave). */
export function membershipTemplate(
  head: RoomHead,
  userId: string,
  content: JsonObject,
  now = Date.now(),
): JsonObject {
  const v = head.version;
  const t = { type: 'm.room.member', state_key: userId, sender: userId, content };
  const auth: string[] = [];
  for (const [type, key] of authEventTypesFor(t, v)) {
    const e = head.state.get(stateKey(type, key));
    if (e) auth.push(e.eventId);
  }
  const prev = head.extremities.slice(0, 10);
  const depth = Math.max(0, ...prev.map((p) => p.depth)) + 1;
  const legacy = v.eventIdFormat === 'v1';
  const refOf = (id: string, hash: string | undefined): unknown =>
    legacy ? [id, hash ? { sha256: hash } : {}] : id;
  const authRefs = auth.map((id) => {
    const entry = [...head.state.values()].find((e) => e.eventId === id);
    return refOf(id, entry ? referenceHashOf(entry.pdu, v) : undefined);
  });
  return {
    ...t,
    room_id: head.roomId,
    prev_events: prev.map((p) => refOf(p.eventId, p.refHash)),
    auth_events: authRefs,
    depth,
    origin_server_ts: now,
    origin: serverNameOf(userId),
  };
}

/** Walks prev_events back from `latest`, stopping at `earliest`, up to `limit` events (get_missing_events). */
export async function missingEvents(
  storage: Storage,
  head: RoomHead,
  earliest: readonly string[],
  latest: readonly string[],
  limit: number,
  minDepth: number,
): Promise<StoredEvent[]> {
  const stop = new Set([...earliest, ...latest]);
  const out: StoredEvent[] = [];
  const latestEvents = await eventsById(storage.db, head.roomNid, latest, head.version);
  let frontier = [...new Set([...latestEvents.values()].flatMap((e) => e.pdu.prev_events))].filter(
    (id) => !stop.has(id),
  );
  while (frontier.length && out.length < limit) {
    const found = await eventsById(storage.db, head.roomNid, frontier, head.version);
    const next: string[] = [];
    for (const ev of [...found.values()].sort((a, b) => b.pdu.depth - a.pdu.depth)) {
      if (out.length >= limit) break;
      if (ev.row.rejected_reason !== null || ev.pdu.depth < minDepth) continue;
      stop.add(ev.eventId);
      out.push(ev);
      for (const p of ev.pdu.prev_events) if (!stop.has(p)) next.push(p);
    }
    frontier = [...new Set(next)];
  }
  return out.sort((a, b) => a.pdu.depth - b.pdu.depth);
}

/** The events from `from` (included) back through prev_events, newest first, up to `limit` (backfill). */
export async function backfillEvents(
  storage: Storage,
  head: RoomHead,
  from: readonly string[],
  limit: number,
): Promise<StoredEvent[]> {
  const seen = new Set<string>();
  const out: StoredEvent[] = [];
  let frontier = [...new Set(from)];
  while (frontier.length && out.length < limit) {
    const found = await eventsById(storage.db, head.roomNid, frontier, head.version);
    const next: string[] = [];
    for (const ev of [...found.values()].sort((a, b) => b.pdu.depth - a.pdu.depth)) {
      if (seen.has(ev.eventId) || out.length >= limit) continue;
      seen.add(ev.eventId);
      if (ev.row.rejected_reason !== null) continue;
      out.push(ev);
      for (const p of ev.pdu.prev_events) if (!seen.has(p)) next.push(p);
    }
    frontier = [...new Set(next)];
  }
  return out;
}
