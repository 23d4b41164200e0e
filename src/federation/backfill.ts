/**
 * Backfill from the joining side (server-server API "Backfilling and retrieving missing events"): when a client
 * paginates past the oldest event this server has of a room, ask the servers in the room (the creator's first, as
 * Synapse does, then every other server with a joined member, each in turn on failure) for the events before the
 * room's backward extremities with GET /backfill. Each PDU is checked (format, signatures, hash); auth events and
 * the state at prev events this server lacks are fetched first (/event_auth, /state_ids and /event, stored as
 * outliers, reusing the ingestion helpers); then the batch is persisted in ONE transaction inside the room's queue
 * as history with negative stream positions (input/backfill.ts).
 */
import type { Logger } from 'pino';
import { writeBackfill, type BackfillResult } from '../input/backfill.js';
import { lookupIn } from '../input/room-head.js';
import type { RoomWriter } from '../input/room-writer.js';
import { eventsById, forRules } from '../input/state-at.js';
import { roomIdOf, type JsonObject, type Pdu } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import { backfillPositions, backwardExtremities, idsWithState } from '../storage/backfill.js';
import type { Storage } from '../storage/db.js';
import type { StateMapNids } from '../storage/state.js';
import type { FederationClient } from './client.js';
import { fetchAuthChain, fetchStateAfter, roomInfo, type IngestDeps, type RoomInfo } from './ingest.js';
import type { KeyRing } from './keyring.js';
import { checkReceivedPdu } from './pdu-checks.js';
import { aclAllows, serversInRoom } from './room-access.js';

export interface BackfillDeps {
  storage: Storage;
  writer: RoomWriter;
  serverName: string;
  keyRing: Pick<KeyRing, 'getVerifyKey'>;
  client: Pick<FederationClient, 'get' | 'post'>;
  log?: Pick<Logger, 'info' | 'warn'> | undefined;
}

/** What one backfill did. */
export interface BackfillOutcome {
  /** Events newly placed in the room's timeline. */
  placed: number;
  /** Events promoted from outliers (a reader's cached copies of them are stale). */
  promoted: string[];
  /** Whether a server answered (false: no server to ask, nothing to ask for, or every server failed). */
  answered: boolean;
}

/** Requests for the state at, or the auth chain of, unknown events per batch at most. */
const MAX_GAP_FETCHES = 5;
const enc = encodeURIComponent;
const NOTHING: BackfillOutcome = { placed: 0, promoted: [], answered: false };

export class Backfiller {
  readonly #inFlight = new Map<string, Promise<BackfillOutcome>>();

  constructor(private readonly deps: BackfillDeps) {}

  /**
   * Fetches up to `limit` events older than the room's oldest timeline events. Concurrent calls for one room share
   * one fetch. Never throws for a remote failure: the outcome says nothing was placed.
   */
  backfill(roomId: string, limit: number): Promise<BackfillOutcome> {
    const running = this.#inFlight.get(roomId);
    if (running) return running;
    const p = this.#run(roomId, limit).finally(() => this.#inFlight.delete(roomId));
    this.#inFlight.set(roomId, p);
    return p;
  }

  /**
   * Servers to ask: the creator's server first, then the others with a joined member; never this one, nor one the
   * room's m.room.server_acl denies.
   */
  async #servers(roomId: string): Promise<string[]> {
    const head = await this.deps.writer.head(roomId);
    if (!head) return [];
    const joined = serversInRoom(head);
    const creator = lookupIn(head.state)('m.room.create', '')?.sender;
    const first = creator ? serverNameOf(creator) : undefined;
    const ordered = [
      ...(first && joined.has(first) ? [first] : []),
      ...[...joined].filter((s) => s !== first),
    ];
    return ordered.filter((s) => s !== this.deps.serverName && aclAllows(head, s));
  }

  async #run(roomId: string, limit: number): Promise<BackfillOutcome> {
    const servers = await this.#servers(roomId);
    if (servers.length === 0) return NOTHING;
    const room = await roomInfo(this.deps.storage, roomId);
    if (!room) return NOTHING;
    const from = await backwardExtremities(this.deps.storage.db, room.roomNid);
    if (from.length === 0) return NOTHING;
    for (const server of servers) {
      const events = await this.#ask(server, room, from, limit);
      if (!events || events.length === 0) continue;
      try {
        const result = await this.#persist(server, room, events);
        return { placed: result.placed.length, promoted: result.promoted, answered: true };
      } catch (err) {
        this.deps.log?.warn({ err, roomId, server }, 'cannot persist a backfilled batch');
      }
    }
    return NOTHING;
  }

  /** GET /backfill from one server: its checked PDUs of this room, or undefined when it failed. */
  async #ask(
    server: string,
    room: RoomInfo,
    from: readonly string[],
    limit: number,
  ): Promise<{ eventId: string; raw: Pdu }[] | undefined> {
    let body: unknown;
    try {
      const res = await this.deps.client.get(server, `/_matrix/federation/v1/backfill/${enc(room.roomId)}`, {
        query: { v: from, limit },
      });
      body = res.body;
    } catch (err) {
      this.deps.log?.info({ err: (err as Error).message, server, roomId: room.roomId }, 'backfill failed');
      return undefined;
    }
    const pdus = (body as { pdus?: unknown } | undefined)?.pdus;
    if (!Array.isArray(pdus)) return undefined;
    const out = new Map<string, { eventId: string; raw: Pdu }>();
    for (const p of pdus.slice(0, limit)) {
      if (typeof p !== 'object' || p === null || Array.isArray(p)) continue;
      const c = await checkReceivedPdu(this.deps.keyRing, p as JsonObject, room.version);
      if (!c.ok) {
        this.deps.log?.info({ eventId: c.eventId, reason: c.reason, server }, 'backfilled PDU dropped');
        continue;
      }
      if (roomIdOf(c.raw, c.eventId) !== room.roomId) continue;
      out.set(c.eventId, { eventId: c.eventId, raw: c.raw });
    }
    return [...out.values()];
  }

  /** Fetches what the batch depends on, then persists it in the room's queue, in one transaction. */
  async #persist(
    server: string,
    room: RoomInfo,
    events: readonly { eventId: string; raw: Pdu }[],
  ): Promise<BackfillResult> {
    const { storage, writer } = this.deps;
    const ingest: IngestDeps = { storage, writer, keyRing: this.deps.keyRing, client: this.deps.client };
    const ids = new Set(events.map((e) => e.eventId));
    const pdus = events.map((e) => ({ eventId: e.eventId, pdu: forRules(e.raw, room.version) }));

    // Auth events neither in the batch nor stored: the auth chain of the event citing them.
    const authIds = new Set(pdus.flatMap((e) => e.pdu.auth_events).filter((id) => !ids.has(id)));
    const knownAuth = await eventsById(storage.db, room.roomNid, authIds, room.version);
    const needAuth = pdus.filter((e) => e.pdu.auth_events.some((id) => !ids.has(id) && !knownAuth.has(id)));
    for (const e of needAuth.slice(0, MAX_GAP_FETCHES)) {
      await fetchAuthChain(ingest, server, room, e.eventId).catch((err: Error) => {
        this.deps.log?.info({ err: err.message, eventId: e.eventId }, 'no auth chain for a backfilled event');
      });
    }

    // Prev events neither in the batch nor stored with their state: the state after them from /state_ids.
    const prevIds = [...new Set(pdus.flatMap((e) => e.pdu.prev_events).filter((id) => !ids.has(id)))];
    const withState = await idsWithState(storage.db, room.roomNid, prevIds);
    const prevStates = new Map<string, StateMapNids>();
    for (const id of prevIds.filter((p) => !withState.has(p)).slice(0, MAX_GAP_FETCHES)) {
      try {
        prevStates.set(id, await fetchStateAfter(ingest, server, room, id));
      } catch (err) {
        this.deps.log?.info(
          { err: (err as Error).message, eventId: id },
          'no state at a backfilled prev event',
        );
      }
    }

    const positions = await backfillPositions(storage);
    return writer.runExclusive(room.roomId, () =>
      storage.db
        .transaction()
        .execute((trx) => writeBackfill(trx, storage.engine, room, { events, prevStates }, positions)),
    );
  }
}
