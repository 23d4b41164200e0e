/**
 * Ingestion of PDUs received from other servers: the second input of the room writer. Per PDU (grouped by room,
 * oldest first): format, signatures and hash (pdu-checks.ts); then the writer plans and persists it. When the writer
 * lacks its auth events they are fetched (/event_auth) and stored as outliers; when it lacks the state at a prev event,
 * the gap is fetched from the origin with /get_missing_events and ingested oldest first, and if a prev event is still
 * unknown, the state at it comes from /state_ids plus /event (stored as outliers), as Synapse does.
 */
import type { Logger } from 'pino';
import type { RoomWriter } from '../input/room-writer.js';
import { checkAgainstAuthEvents, MissingEventsError, type OutlierEvent } from '../input/remote-events.js';
import { eventsById, forRules } from '../input/state-at.js';
import type { JsonObject, Pdu } from '../rooms/event.js';
import { createEventIdFromRoomId, roomIdOf } from '../rooms/event.js';
import { findRoomVersion, type RoomVersion } from '../rooms/room-versions.js';
import type { Storage } from '../storage/db.js';
import { stateKey, type StateMapNids } from '../storage/state.js';
import type { FederationClient } from './client.js';
import type { KeyRing } from './keyring.js';
import { checkReceivedPdu } from './pdu-checks.js';
import { aclAllows } from './room-access.js';

/** The result of one PDU of a transaction: {} when accepted, `error` when not. */
export type PduResult = { error?: string };

export interface IngestDeps {
  storage: Storage;
  writer: RoomWriter;
  keyRing: Pick<KeyRing, 'getVerifyKey'>;
  /** Fetches what is missing from other servers; without it a PDU with unknown prev or auth events fails. */
  client?: Pick<FederationClient, 'get' | 'post'> | undefined;
  log?: Logger | undefined;
}

const MISSING_EVENTS_LIMIT = 20;
/**
 * The most prev events of one event whose state is fetched with /state_ids (two requests or more each): an event
 * citing hundreds of unknown prev events must not make this server send hundreds of requests.
 */
const MAX_PREV_STATE_FETCHES = 10;
/** More unknown events than this in a /state_ids answer are fetched with one /state request instead of /event each. */
const STATE_FETCH_THRESHOLD = 20;
/** /event requests in flight at once towards one server while filling in a state. */
const EVENT_FETCH_CONCURRENCY = 8;
const enc = encodeURIComponent;

export interface RoomInfo {
  roomId: string;
  roomNid: number;
  version: RoomVersion;
}

export async function roomInfo(storage: Storage, roomId: string): Promise<RoomInfo | undefined> {
  const row = await storage.db
    .selectFrom('rooms')
    .select(['room_nid', 'room_version', 'current_snapshot_nid'])
    .where('room_id', '=', roomId)
    .executeTakeFirst();
  const version = row ? findRoomVersion(row.room_version) : undefined;
  if (!row || !version || row.current_snapshot_nid === null) return undefined;
  return { roomId, roomNid: Number(row.room_nid), version };
}

/**
 * Ingests the PDUs of a transaction from `origin`. Returns a result per event id: {} when the event was accepted,
 * soft-failed or already known, `{ error }` when it was dropped or rejected.
 */
export async function ingestRemotePdus(
  deps: IngestDeps,
  origin: string,
  pdus: readonly JsonObject[],
): Promise<Record<string, PduResult>> {
  const results: Record<string, PduResult> = {};
  const byRoom = new Map<string, JsonObject[]>();
  for (const p of pdus) {
    const roomId = typeof p.room_id === 'string' ? p.room_id : undefined;
    if (!roomId) continue;
    const list = byRoom.get(roomId) ?? [];
    list.push(p);
    byRoom.set(roomId, list);
  }
  for (const [roomId, list] of byRoom) {
    const room = await roomInfo(deps.storage, roomId);
    if (!room) {
      for (const p of list)
        if (typeof p.event_id === 'string') results[p.event_id] = { error: 'Unknown room' };
      continue;
    }
    // m.room.server_acl: PDUs a denied server sends are dropped (the events it relays for others too).
    const head = await deps.writer.head(roomId);
    if (head && !aclAllows(head, origin)) {
      for (const p of list) {
        const c = await checkReceivedPdu(deps.keyRing, p, room.version);
        if (c.eventId) results[c.eventId] = { error: 'Server is banned from this room' };
      }
      continue;
    }
    list.sort((a, b) => Number(a.depth) - Number(b.depth));
    for (const p of list) {
      const checked = await checkReceivedPdu(deps.keyRing, p, room.version);
      if (!checked.ok) {
        if (checked.eventId) results[checked.eventId] = { error: checked.reason };
        continue;
      }
      try {
        const outcome = await ingestOne(deps, origin, room, checked.eventId, checked.raw, 1);
        results[checked.eventId] = outcome === undefined ? {} : { error: outcome };
      } catch (err) {
        deps.log?.warn({ err, eventId: checked.eventId, origin }, 'cannot ingest a remote event');
        results[checked.eventId] = { error: (err as Error).message };
      }
    }
  }
  return results;
}

/** Persists one checked event, fetching what it lacks; returns undefined when accepted, else why not. */
async function ingestOne(
  deps: IngestDeps,
  origin: string,
  room: RoomInfo,
  eventId: string,
  raw: Pdu,
  fetchBudget: number,
  prevStates?: Map<string, StateMapNids>,
): Promise<string | undefined> {
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      const out = await deps.writer.ingestRemote(room.roomId, {
        eventId,
        raw,
        ...(prevStates ? { prevStates } : {}),
      });
      // A soft-failed event is stored (kept out of the timeline and the extremities), not rejected: like Synapse,
      // the sending server gets no error for it.
      if (
        out.status === 'accepted' ||
        out.status === 'soft_failed' ||
        (out.status === 'duplicate' && out.reason === undefined)
      )
        return undefined;
      return out.reason ?? out.status;
    } catch (err) {
      if (!(err instanceof MissingEventsError) || !deps.client) throw err;
      if (err.kind === 'auth_events') {
        await fetchAuthChain(deps, origin, room, eventId);
        continue;
      }
      if (fetchBudget > 0 && attempt === 0) {
        await fetchMissingPrevs(deps, origin, room, eventId, fetchBudget - 1);
        continue;
      }
      if (err.eventIds.length > MAX_PREV_STATE_FETCHES)
        return `Too many unknown prev events (${err.eventIds.length}) to fetch the state at each`;
      prevStates ??= new Map();
      for (const prev of err.eventIds) {
        if (prevStates.has(prev)) continue;
        prevStates.set(prev, await fetchStateAfter(deps, origin, room, prev));
      }
    }
  }
  return 'Cannot find the events this event depends on';
}

/** /get_missing_events between the room's extremities and the event; the events found are ingested oldest first. */
async function fetchMissingPrevs(
  deps: IngestDeps,
  origin: string,
  room: RoomInfo,
  eventId: string,
  budget: number,
): Promise<void> {
  const client = deps.client as NonNullable<IngestDeps['client']>;
  const head = await deps.writer.head(room.roomId);
  const earliest = head?.extremities.map((e) => e.eventId) ?? [];
  const res = await client
    .post(origin, `/_matrix/federation/v1/get_missing_events/${enc(room.roomId)}`, {
      earliest_events: earliest,
      latest_events: [eventId],
      limit: MISSING_EVENTS_LIMIT,
      min_depth: 0,
    })
    .catch((err: Error) => {
      deps.log?.info({ err: err.message, origin }, 'get_missing_events failed');
      return undefined;
    });
  const events = (res?.body as { events?: unknown } | undefined)?.events;
  if (!Array.isArray(events)) return;
  const checked: { eventId: string; raw: Pdu }[] = [];
  // No more than the events asked for: a huge answer must not make this server check and store thousands.
  const asked = events
    .filter((e): e is object => typeof e === 'object' && e !== null)
    .slice(0, MISSING_EVENTS_LIMIT);
  for (const e of asked) {
    const c = await checkReceivedPdu(deps.keyRing, e as JsonObject, room.version);
    if (c.ok && c.eventId !== eventId) checked.push({ eventId: c.eventId, raw: c.raw });
  }
  checked.sort((a, b) => a.raw.depth - b.raw.depth);
  for (const c of checked) {
    try {
      await ingestOne(deps, origin, room, c.eventId, c.raw, budget);
    } catch (err) {
      deps.log?.info({ err, eventId: c.eventId }, 'a missing event could not be ingested');
    }
  }
}

/** Fetches one event from `origin` and checks it. */
async function fetchEvent(
  deps: IngestDeps,
  origin: string,
  room: RoomInfo,
  eventId: string,
): Promise<{ eventId: string; raw: Pdu } | undefined> {
  const client = deps.client as NonNullable<IngestDeps['client']>;
  const res = await client.get(origin, `/_matrix/federation/v1/event/${enc(eventId)}`);
  const pdus = (res.body as { pdus?: unknown } | undefined)?.pdus;
  const first: unknown = Array.isArray(pdus) ? pdus[0] : undefined;
  if (typeof first !== 'object' || first === null) return undefined;
  const c = await checkReceivedPdu(deps.keyRing, first as JsonObject, room.version);
  if (!c.ok || c.eventId !== eventId) return undefined;
  return { eventId: c.eventId, raw: c.raw };
}

/** The events by id with /event, a few requests at a time; an event the server does not return is left out. */
async function fetchEvents(
  deps: IngestDeps,
  origin: string,
  room: RoomInfo,
  ids: readonly string[],
): Promise<{ eventId: string; raw: Pdu }[]> {
  const out: { eventId: string; raw: Pdu }[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++] as string;
      const ev = await fetchEvent(deps, origin, room, id);
      if (ev) out.push(ev);
    }
  };
  await Promise.all(Array.from({ length: Math.min(EVENT_FETCH_CONCURRENCY, ids.length) }, worker));
  return out;
}

/**
 * The state before `prevId` and its auth chain in one /state request, when too many of them are unknown to ask
 * for each (as Synapse does); each event is checked (signatures, hashes, id) and only the wanted ones are kept.
 */
async function fetchFullState(
  deps: IngestDeps,
  origin: string,
  room: RoomInfo,
  prevId: string,
  wanted: ReadonlySet<string>,
): Promise<{ eventId: string; raw: Pdu }[]> {
  const client = deps.client as NonNullable<IngestDeps['client']>;
  const res = await client.get(origin, `/_matrix/federation/v1/state/${enc(room.roomId)}`, {
    query: { event_id: prevId },
  });
  const body = res.body as { pdus?: unknown; auth_chain?: unknown } | undefined;
  const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const out: { eventId: string; raw: Pdu }[] = [];
  const seen = new Set<string>();
  for (const p of [...list(body?.pdus), ...list(body?.auth_chain)]) {
    if (typeof p !== 'object' || p === null) continue;
    const c = await checkReceivedPdu(deps.keyRing, p as JsonObject, room.version);
    if (!c.ok || !wanted.has(c.eventId) || seen.has(c.eventId)) continue;
    seen.add(c.eventId);
    out.push({ eventId: c.eventId, raw: c.raw });
  }
  // /state does not carry the event itself: fetch what is still missing (prevId at least) one by one.
  return [
    ...out,
    ...(await fetchEvents(
      deps,
      origin,
      room,
      [...wanted].filter((id) => !seen.has(id)),
    )),
  ];
}

/** An auth event known before a batch of outliers is checked. */
export interface KnownAuthEvent {
  eventId: string;
  pdu: Pdu;
  rejected: boolean;
}

/**
 * Checks a batch of events each against its own auth events (found in the batch or in `known`), in depth order so
 * auth events come first; returns them as outliers, rejected ones with their reason.
 */
export function checkOutlierBatch(
  version: RoomVersion,
  roomId: string,
  events: readonly { eventId: string; raw: Pdu }[],
  known: ReadonlyMap<string, KnownAuthEvent>,
): OutlierEvent[] {
  const batch = new Map(events.map((e) => [e.eventId, forRules(e.raw, version)]));
  const rejected = new Set<string>();
  const authOf = (id: string): KnownAuthEvent | undefined => {
    const b = batch.get(id);
    if (b) return { eventId: id, pdu: b, rejected: rejected.has(id) };
    const k = known.get(id);
    return k ? { ...k, rejected: k.rejected || rejected.has(id) } : undefined;
  };
  const out: OutlierEvent[] = [];
  for (const e of [...events].sort((a, b) => a.raw.depth - b.raw.depth)) {
    const pdu = batch.get(e.eventId) as Pdu;
    const auth = pdu.auth_events.map(authOf);
    let reason: string | undefined;
    if (auth.some((a) => a === undefined)) reason = 'auth events unknown';
    else {
      const isCreate = pdu.type === 'm.room.create' && pdu.state_key === '';
      const create =
        version.createEventInAuthEvents || isCreate ? undefined : authOf(createEventIdFromRoomId(roomId));
      reason = checkAgainstAuthEvents(
        pdu,
        auth.filter((a) => a !== undefined),
        version,
        create,
      );
    }
    if (reason) rejected.add(e.eventId);
    out.push({ eventId: e.eventId, raw: e.raw, rejectedReason: reason });
  }
  return out;
}

/**
 * Stores checked events as outliers, each checked against its own auth events (in the batch or stored). Events
 * naming another room are left out: another server's answer cannot put them in this one.
 */
export async function storeCheckedOutliers(
  deps: Pick<IngestDeps, 'storage' | 'writer'>,
  room: RoomInfo,
  given: readonly { eventId: string; raw: Pdu }[],
): Promise<Map<string, number>> {
  const version = room.version;
  const events = given.filter((e) => roomIdOf(e.raw, e.eventId) === room.roomId);
  const ids = new Set(events.map((e) => e.eventId));
  const wanted = new Set<string>();
  for (const e of events)
    for (const a of forRules(e.raw, version).auth_events) if (!ids.has(a)) wanted.add(a);
  if (!version.createEventInAuthEvents) wanted.add(createEventIdFromRoomId(room.roomId));
  const stored = await eventsById(deps.storage.db, room.roomNid, wanted, version);
  const known = new Map<string, KnownAuthEvent>();
  for (const s of stored.values())
    known.set(s.eventId, { eventId: s.eventId, pdu: s.pdu, rejected: s.row.rejected_reason !== null });
  return deps.writer.storeOutliers(room.roomId, checkOutlierBatch(version, room.roomId, events, known));
}

/** /event_auth for an event: its auth chain, stored as outliers. */
export async function fetchAuthChain(
  deps: IngestDeps,
  origin: string,
  room: RoomInfo,
  eventId: string,
): Promise<void> {
  const client = deps.client as NonNullable<IngestDeps['client']>;
  const res = await client.get(
    origin,
    `/_matrix/federation/v1/event_auth/${enc(room.roomId)}/${enc(eventId)}`,
  );
  const chain = (res.body as { auth_chain?: unknown } | undefined)?.auth_chain;
  const checked: { eventId: string; raw: Pdu }[] = [];
  for (const e of Array.isArray(chain) ? chain : []) {
    if (typeof e !== 'object' || e === null) continue;
    const c = await checkReceivedPdu(deps.keyRing, e as JsonObject, room.version);
    if (c.ok) checked.push({ eventId: c.eventId, raw: c.raw });
  }
  await storeCheckedOutliers(deps, room, checked);
}

/**
 * The state after `prevId` from `origin`: /state_ids at it (the state before it), the events this server lacks (and
 * the prev event itself) fetched with /event and stored as outliers, plus the prev event when it is a state event.
 */
export async function fetchStateAfter(
  deps: IngestDeps,
  origin: string,
  room: RoomInfo,
  prevId: string,
): Promise<StateMapNids> {
  const client = deps.client as NonNullable<IngestDeps['client']>;
  const res = await client.get(origin, `/_matrix/federation/v1/state_ids/${enc(room.roomId)}`, {
    query: { event_id: prevId },
  });
  const body = res.body as { pdu_ids?: unknown; auth_chain_ids?: unknown } | undefined;
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x) => typeof x === 'string') : []);
  const stateIds = strings(body?.pdu_ids);
  const all = new Set([...stateIds, ...strings(body?.auth_chain_ids), prevId]);
  const known = await eventsById(deps.storage.db, room.roomNid, all, room.version);
  const unknown = [...all].filter((id) => !known.has(id));
  const fetched =
    unknown.length > STATE_FETCH_THRESHOLD
      ? await fetchFullState(deps, origin, room, prevId, new Set(unknown))
      : await fetchEvents(deps, origin, room, unknown);
  const nids = await storeCheckedOutliers(deps, room, fetched);
  for (const k of known.values()) nids.set(k.eventId, k.nid);
  const events = await eventsById(deps.storage.db, room.roomNid, [...stateIds, prevId], room.version);
  const state: StateMapNids = new Map();
  for (const id of stateIds) {
    const ev = events.get(id);
    if (ev && typeof ev.pdu.state_key === 'string' && ev.row.rejected_reason === null)
      state.set(stateKey(ev.pdu.type, ev.pdu.state_key), ev.nid);
  }
  const prev = events.get(prevId);
  if (!prev) throw new Error(`Cannot fetch event ${prevId} from ${origin}`);
  if (typeof prev.pdu.state_key === 'string' && prev.row.rejected_reason === null)
    state.set(stateKey(prev.pdu.type, prev.pdu.state_key), prev.nid);
  return state;
}
