/**
 * The one place that writes room events. Per room: a queue serialises writes; each event is built, signed and
 * checked against the auth rules; then the event, its JSON, graph edges, state snapshot, stream ordering, the
 * room's current state, forward extremities and membership read model commit in ONE transaction; only then are
 * caches updated and listeners notified.
 */
import { randomBytes } from 'node:crypto';
import type { Transaction } from 'kysely';
import { MatrixError } from '../api/errors.js';
import { authEventTypesFor } from '../rooms/auth/auth-events.js';
import { checkEventAuth } from '../rooms/auth/check.js';
import { redactLevel, userPowerLevel } from '../rooms/auth/power-levels.js';
import { buildEvent, type EventTemplate } from '../rooms/build.js';
import { canonicalJson } from '../rooms/canonical-json.js';
import type { JsonObject, LegacyPdu, Pdu } from '../rooms/event.js';
import { fromLegacyPdu, roomIdFromCreateEventId } from '../rooms/event.js';
import { getRoomVersion, type RoomVersion } from '../rooms/room-versions.js';
import { checkPduSize } from '../rooms/validate.js';
import type { SigningKey } from '../keys/signing-key.js';
import type { Storage } from '../storage/db.js';
import { isUniqueViolation } from '../storage/dialect.js';
import { findTxnEvent, getEventRowById, insertEvent } from '../storage/events.js';
import type { Engine } from '../storage/dialect.js';
import { indexEventForSearch } from '../storage/search.js';
import type { Database } from '../storage/schema.js';
import { insertSnapshot, MAX_CHAIN, stateKey } from '../storage/state.js';
import { injectFault } from '../integrity/faults.js';
import { KeyedQueue } from '../util/keyed-queue.js';
import { writeInvite, writeJoinedRoom, type JoinedRoom } from './joined-room.js';
import {
  planRemoteEvent,
  writeOutliers,
  writeRemoteEvent,
  type OutlierEvent,
  type RemoteEvent,
  type RemoteOutcome,
} from './remote-events.js';
import { loadRoomHead, lookupIn, referenceHashOf, type RoomHead, type StateEntry } from './room-head.js';

/** What a caller asks to send; the writer fills in the graph fields, hashes and signature. */
export interface NewEvent {
  type: string;
  sender: string;
  content: JsonObject;
  state_key?: string;
  /** The event an m.room.redaction redacts. */
  redacts?: string;
}

export interface TxnKey {
  userId: string;
  deviceId: string;
  txnId: string;
}

export interface PersistedEvent {
  eventId: string;
  eventNid: number;
  streamOrdering: number;
  roomId: string;
  pdu: Pdu;
}

export interface CommittedBatch {
  roomId: string;
  events: PersistedEvent[];
}

export type CommitListener = (batch: CommittedBatch) => void;

const MAX_PREV_EVENTS = 10;

interface Prepared {
  /** As stored: in room versions 1 and 2 the wire form, whose `prev_events`/`auth_events` are `[id, hashes]`. */
  pdu: Pdu;
  eventId: string;
  prevIds: string[];
  authIds: string[];
}

/** `$opaque:server`, the event id format of room versions 1 and 2 (18 random letters, as Synapse's are). */
function legacyEventId(serverName: string): string {
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const bytes = randomBytes(18);
  let local = '';
  for (const b of bytes) local += letters[b % letters.length];
  return `$${local}:${serverName}`;
}

/** The PDU the authorization rules read: room versions 1 and 2 cite events as `[id, hashes]` on the wire. */
function forAuth(pdu: Pdu, version: RoomVersion): Pdu {
  return version.eventIdFormat === 'v1' ? fromLegacyPdu(pdu as unknown as LegacyPdu) : pdu;
}

/**
 * Every event this server builds (messages, state, memberships with their reasons, redactions, the events of
 * createRoom and upgrades) must fit the 65536-byte PDU limit, or other servers would drop it.
 */
function refuseOversized(pdu: Pdu): void {
  const tooLarge = checkPduSize(pdu);
  if (tooLarge) throw new MatrixError('M_TOO_LARGE', `Event too large: ${tooLarge}`);
}

export class RoomWriter {
  #queue = new KeyedQueue();
  #heads = new Map<string, RoomHead>();
  #listeners = new Set<CommitListener>();

  constructor(
    private readonly storage: Storage,
    private readonly serverName: string,
    private readonly key: SigningKey,
  ) {}

  onCommit(listener: CommitListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The current head of a room (current state with PDUs), or undefined for an unknown room. */
  async head(roomId: string): Promise<RoomHead | undefined> {
    const cached = this.#heads.get(roomId);
    if (cached) return cached;
    const head = await loadRoomHead(this.storage.db, roomId);
    // A commit that finished while this load ran has stored a newer head: never replace it with an older one.
    const newer = this.#heads.get(roomId);
    if (newer) return newer;
    if (head) this.#remember(head);
    return head;
  }

  /** Forgets a cached head (after a repair rewrote the room's rows). */
  invalidate(roomId: string): void {
    this.#heads.delete(roomId);
  }

  /** Runs `fn` in the room's write queue, between two writes (the doctor's online repairs). */
  runExclusive<T>(roomId: string, fn: () => Promise<T>): Promise<T> {
    return this.#queue.run(roomId, fn);
  }

  /**
   * Creates a room: the create event, then `rest(roomId)` in order, all committed in one transaction.
   */
  async createRoom(
    versionId: string,
    creator: string,
    createContent: JsonObject,
    rest: (roomId: string) => NewEvent[],
  ): Promise<{ roomId: string; events: PersistedEvent[] }> {
    const version = getRoomVersion(versionId);
    const roomId = version.roomIdFromCreateEvent
      ? undefined
      : `!${randomBytes(12).toString('base64url')}:${this.serverName}`;
    const now = Date.now();
    const content: JsonObject = { ...createContent, room_version: version.id };
    if (version.creatorInContent) content.creator = creator;
    const built = buildEvent(
      {
        type: 'm.room.create',
        state_key: '',
        sender: creator,
        content,
        ...(roomId ? { room_id: roomId } : {}),
        ...(version.eventIdFormat === 'v1' ? { event_id: legacyEventId(this.serverName) } : {}),
        prev_events: [],
        auth_events: [],
        depth: 1,
        origin_server_ts: now,
      },
      this.#signing(version),
    );
    const finalRoomId = roomId ?? roomIdFromCreateEventId(built.eventId);
    refuseOversized(built.pdu);
    const auth = checkEventAuth(forAuth(built.pdu, version), () => undefined, version);
    if (!auth.allowed) throw new MatrixError('M_FORBIDDEN', auth.reason);
    return this.#queue.run(finalRoomId, async () => {
      const head: RoomHead = {
        roomNid: 0,
        roomId: finalRoomId,
        version,
        snapshot: { nid: 0, chainLen: 0 },
        state: new Map(),
        extremities: [],
      };
      const prepared: Prepared[] = [{ pdu: built.pdu, eventId: built.eventId, prevIds: [], authIds: [] }];
      const working = applyToHead(head, built.pdu, built.eventId);
      for (const ev of rest(finalRoomId)) prepared.push(this.#prepare(working, ev));
      const events = await this.#commit(head, prepared, undefined, { creator, createdTs: now });
      return { roomId: finalRoomId, events };
    });
  }

  /**
   * Sends one event into an existing room. With `txn`, a retry returns the first event's id. A state event
   * identical to the current one (same type, state key, sender and content) is not sent again: its id is
   * returned, as Synapse does.
   */
  async send(
    roomId: string,
    ev: NewEvent,
    txn?: TxnKey,
  ): Promise<{ eventId: string; streamOrdering?: number }> {
    return this.#queue.run(roomId, async () => {
      if (txn) {
        const existing = await findTxnEvent(this.storage.db, txn.userId, txn.deviceId, txn.txnId);
        if (existing) return { eventId: existing };
      }
      const head = await this.head(roomId);
      if (!head) throw new MatrixError('M_NOT_FOUND', 'Unknown room');
      if (ev.state_key !== undefined) {
        const current = head.state.get(stateKey(ev.type, ev.state_key));
        if (
          current &&
          current.pdu.sender === ev.sender &&
          canonicalJson(current.pdu.content) === canonicalJson(ev.content)
        ) {
          return { eventId: current.eventId };
        }
      }
      if (ev.type === 'm.room.redaction') await this.#checkRedaction(head, ev);
      const working = cloneHead(head);
      const prepared = this.#prepare(working, ev);
      let persisted: PersistedEvent | undefined;
      try {
        [persisted] = await this.#commit(head, [prepared], txn);
      } catch (err) {
        // The same transaction committed through another path in the meantime: answer with its event.
        const existing =
          txn && isUniqueViolation(err)
            ? await findTxnEvent(this.storage.db, txn.userId, txn.deviceId, txn.txnId)
            : undefined;
        if (existing) return { eventId: existing };
        throw err;
      }
      if (!persisted) throw new Error('commit returned no event');
      return { eventId: persisted.eventId, streamOrdering: persisted.streamOrdering };
    });
  }

  /**
   * What the authorization rules cannot see, as Synapse checks it before sending a redaction: the target must be
   * in this room and must not be the create event or the server ACL; without the redact level, it must exist and
   * be the sender's own event.
   */
  async #checkRedaction(head: RoomHead, ev: NewEvent): Promise<void> {
    const targetId = ev.redacts ?? (typeof ev.content.redacts === 'string' ? ev.content.redacts : undefined);
    if (targetId === undefined) return;
    const target = await getEventRowById(this.storage.db, targetId);
    if (target && Number(target.room_nid) !== head.roomNid) {
      throw new MatrixError('M_UNKNOWN', 'Cannot redact event from a different room', {}, 400);
    }
    if (target?.type === 'm.room.create' && target.state_key === '') {
      throw new MatrixError('M_FORBIDDEN', 'Redacting create events is not permitted');
    }
    if (target?.type === 'm.room.server_acl' && target.state_key === '') {
      throw new MatrixError('M_FORBIDDEN', 'Redacting server ACL events is not permitted');
    }
    const lookup = lookupIn(head.state);
    if (userPowerLevel(ev.sender, lookup, head.version) >= redactLevel(lookup)) return;
    if (!target) throw new MatrixError('M_NOT_FOUND', `Could not find event ${targetId}`);
    if (target.sender !== ev.sender) {
      throw new MatrixError('M_FORBIDDEN', "You don't have permission to redact other users' events");
    }
  }

  /**
   * Persists an event another server authored (remote-events.ts): planned against the room's head inside the queue,
   * written in one transaction, then announced to listeners when accepted. Throws MissingEventsError when its auth
   * events or the state at its prev events must be fetched first.
   */
  async ingestRemote(roomId: string, ev: RemoteEvent): Promise<RemoteOutcome> {
    return this.#queue.run(roomId, async () => {
      const head = await this.head(roomId);
      if (!head) throw new MatrixError('M_NOT_FOUND', 'Unknown room');
      const plan = await planRemoteEvent(this.storage.db, head, ev);
      if (plan.status === 'duplicate') return plan;
      const stream = this.storage.stream;
      const position = plan.status === 'accepted' ? stream.allocate() : null;
      let written: Awaited<ReturnType<typeof writeRemoteEvent>>;
      try {
        written = await this.storage.db.transaction().execute(async (trx) => {
          const w = await writeRemoteEvent(trx, head, plan, position);
          if (plan.status === 'accepted') {
            const p = { pdu: ev.raw, eventId: ev.eventId, prevIds: [], authIds: [] };
            await writeSideTables(
              trx,
              this.storage.engine,
              p,
              w.eventNid,
              head.roomNid,
              plan.redactionApplies,
            );
          }
          return w;
        });
      } finally {
        this.#heads.delete(roomId);
        if (position !== null) stream.finish(position);
      }
      if (written.streamOrdering !== null) {
        const persisted: PersistedEvent = {
          eventId: ev.eventId,
          eventNid: written.eventNid,
          streamOrdering: written.streamOrdering,
          roomId,
          pdu: ev.raw,
        };
        for (const l of this.#listeners) l({ roomId, events: [persisted] });
      }
      return plan.reason !== undefined
        ? { status: plan.status, reason: plan.reason }
        : { status: plan.status };
    });
  }

  /** Stores events known only as auth or state events of a room this server is in (no state, no position). */
  async storeOutliers(roomId: string, events: readonly OutlierEvent[]): Promise<Map<string, number>> {
    return this.#queue.run(roomId, async () => {
      const head = await this.head(roomId);
      if (!head) throw new MatrixError('M_NOT_FOUND', 'Unknown room');
      return this.storage.db
        .transaction()
        .execute((trx) => writeOutliers(trx, head.roomNid, head.version, events));
    });
  }

  /**
   * Persists a join over federation (joined-room.ts): the room with the auth chain and state from send_join as
   * outliers and the join event with its state, all in one transaction; then announces the join.
   */
  async persistJoinedRoom(room: JoinedRoom): Promise<PersistedEvent> {
    return this.#queue.run(room.roomId, async () => {
      const stream = this.storage.stream;
      const position = stream.allocate();
      let eventNid: number;
      try {
        ({ eventNid } = await this.storage.db
          .transaction()
          .execute((trx) => writeJoinedRoom(trx, room, position)));
      } finally {
        this.#heads.delete(room.roomId);
        stream.finish(position);
      }
      const persisted: PersistedEvent = {
        eventId: room.join.eventId,
        eventNid,
        streamOrdering: position,
        roomId: room.roomId,
        pdu: room.join.raw,
      };
      for (const l of this.#listeners) l({ roomId: room.roomId, events: [persisted] });
      return persisted;
    });
  }

  /**
   * Builds, signs and auth-checks an event over the room's current head without persisting it: an invite of a user
   * of another server is countersigned by that server first, then persisted with ingestRemote.
   */
  async draft(roomId: string, ev: NewEvent): Promise<{ eventId: string; pdu: Pdu }> {
    return this.#queue.run(roomId, async () => {
      const head = await this.head(roomId);
      if (!head) throw new MatrixError('M_NOT_FOUND', 'Unknown room');
      const p = this.#prepare(cloneHead(head), ev);
      return { eventId: p.eventId, pdu: p.pdu };
    });
  }

  /**
   * An invite of a local user to a room this server is not in (PUT /v2/invite): the room row (without state),
   * the invite as an outlier (its `unsigned.invite_room_state` kept) and the user's invite membership at a new
   * stream position, in one transaction; then announced so the user's /sync shows it. A knock or a leave a local
   * user sent over federation to such a room is stored the same way (the membership is the event's).
   */
  async storeInvite(roomId: string, version: RoomVersion, eventId: string, raw: Pdu): Promise<void> {
    await this.#queue.run(roomId, async () => {
      const stream = this.storage.stream;
      const position = stream.allocate();
      let eventNid: number;
      try {
        eventNid = await this.storage.db
          .transaction()
          .execute((trx) => writeInvite(trx, { roomId, version, eventId, raw, position }));
      } finally {
        this.#heads.delete(roomId);
        stream.finish(position);
      }
      const persisted: PersistedEvent = { eventId, eventNid, streamOrdering: position, roomId, pdu: raw };
      for (const l of this.#listeners) l({ roomId, events: [persisted] });
    });
  }

  /** Builds and auth-checks `ev` against `working`, then applies it to `working`. */
  #prepare(working: RoomHead, ev: NewEvent): Prepared {
    const version = working.version;
    // The authorization rules refuse a second create event (it would have prev_events); in versions whose room id
    // derives from the create event it cannot even be built with a room_id, so refuse it before building.
    if (ev.type === 'm.room.create' && ev.state_key === '') {
      throw new MatrixError('M_FORBIDDEN', 'A room has exactly one m.room.create event');
    }
    const authTypes = authEventTypesFor(
      {
        type: ev.type,
        sender: ev.sender,
        content: ev.content,
        ...(ev.state_key !== undefined ? { state_key: ev.state_key } : {}),
      },
      version,
    );
    const authEvents: string[] = [];
    for (const [t, k] of authTypes) {
      const entry = working.state.get(stateKey(t, k));
      if (entry) authEvents.push(entry.eventId);
    }
    const prev = [...working.extremities].sort((a, b) => b.depth - a.depth).slice(0, MAX_PREV_EVENTS);
    const depth = Math.min(Number.MAX_SAFE_INTEGER, Math.max(0, ...prev.map((p) => p.depth)) + 1);
    const prevIds = prev.map((p) => p.eventId);
    const built = buildEvent(
      {
        type: ev.type,
        sender: ev.sender,
        content: ev.content,
        room_id: working.roomId,
        ...(ev.state_key !== undefined ? { state_key: ev.state_key } : {}),
        ...(ev.redacts !== undefined ? { redacts: ev.redacts } : {}),
        ...this.#legacyFields(working, prev, authTypes),
        prev_events: prevIds,
        auth_events: authEvents,
        depth,
        origin_server_ts: Date.now(),
      },
      this.#signing(version),
    );
    refuseOversized(built.pdu);
    const ids = new Map<Pdu, string>();
    for (const e of working.state.values()) ids.set(e.pdu, e.eventId);
    const result = checkEventAuth(forAuth(built.pdu, version), lookupIn(working.state), version, {
      eventIdOf: (p) => ids.get(p) ?? '',
    });
    if (!result.allowed) throw new MatrixError('M_FORBIDDEN', result.reason);
    Object.assign(working, applyToHead(working, built.pdu, built.eventId));
    return { pdu: built.pdu, eventId: built.eventId, prevIds, authIds: authEvents };
  }

  /** Room versions 1 and 2: a fresh `$opaque:server` id and the reference hashes of the cited events. */
  #legacyFields(
    working: RoomHead,
    prev: RoomHead['extremities'],
    authTypes: [string, string][],
  ): Pick<EventTemplate, 'event_id' | 'reference_hashes'> {
    if (working.version.eventIdFormat !== 'v1') return {};
    const hashes = new Map<string, string>();
    for (const p of prev) if (p.refHash !== undefined) hashes.set(p.eventId, p.refHash);
    for (const [t, k] of authTypes) {
      const entry = working.state.get(stateKey(t, k));
      const hash = entry ? referenceHashOf(entry.pdu, working.version) : undefined;
      if (entry && hash !== undefined) hashes.set(entry.eventId, hash);
    }
    return { event_id: legacyEventId(this.serverName), reference_hashes: hashes };
  }

  #signing(version: RoomVersion) {
    return { roomVersion: version, serverName: this.serverName, keyId: this.key.keyId, seed: this.key.seed };
  }

  /** Writes prepared events in one transaction and, after commit, updates the head and notifies. */
  async #commit(
    head: RoomHead,
    prepared: Prepared[],
    txn: TxnKey | undefined,
    newRoom?: { creator: string; createdTs: number },
  ): Promise<PersistedEvent[]> {
    const stream = this.storage.stream;
    const positions = prepared.map(() => stream.allocate());
    let newHead: RoomHead;
    let persisted: PersistedEvent[];
    try {
      ({ newHead, persisted } = await this.storage.db
        .transaction()
        .execute((trx) => this.#write(trx, head, prepared, positions, txn, newRoom)));
    } catch (err) {
      this.#heads.delete(head.roomId);
      throw err;
    } finally {
      for (const p of positions) stream.finish(p);
    }
    this.#remember(newHead);
    const batch = { roomId: head.roomId, events: persisted };
    for (const l of this.#listeners) l(batch);
    return persisted;
  }

  async #write(
    trx: Transaction<Database>,
    head: RoomHead,
    prepared: Prepared[],
    positions: number[],
    txn: TxnKey | undefined,
    newRoom?: { creator: string; createdTs: number },
  ): Promise<{ newHead: RoomHead; persisted: PersistedEvent[] }> {
    let roomNid = head.roomNid;
    let snapshot = head.snapshot;
    if (newRoom) {
      const row = await trx
        .insertInto('rooms')
        .values({
          room_id: head.roomId,
          room_version: head.version.id,
          creator: newRoom.creator,
          created_ts: newRoom.createdTs,
          is_public: 0,
          current_snapshot_nid: null,
        })
        .returning('room_nid')
        .executeTakeFirstOrThrow();
      roomNid = Number(row.room_nid);
      snapshot = await insertSnapshot(trx, roomNid, null, new Map());
    }
    let working: RoomHead = { ...cloneHead(head), roomNid, snapshot };
    const persisted: PersistedEvent[] = [];
    for (const [i, p] of prepared.entries()) {
      const pos = positions[i] as number;
      const eventNid = await insertEvent(
        trx,
        {
          eventId: p.eventId,
          roomNid,
          type: p.pdu.type,
          stateKey: p.pdu.state_key ?? null,
          sender: p.pdu.sender,
          depth: p.pdu.depth,
          originServerTs: p.pdu.origin_server_ts,
          streamOrdering: pos,
          json: canonicalJson(p.pdu),
          stateSnapshotNid: working.snapshot.nid,
          containsUrl: typeof p.pdu.content.url === 'string',
        },
        p.prevIds,
        p.authIds,
      );
      if (p.pdu.state_key !== undefined) {
        working = await this.#writeState(trx, working, p, eventNid, pos);
      } else {
        working = applyToHead(working, p.pdu, p.eventId, eventNid);
      }
      await injectFault('persist-event', trx);
      await writeSideTables(trx, this.storage.engine, p, eventNid, roomNid);
      persisted.push({ eventId: p.eventId, eventNid, streamOrdering: pos, roomId: head.roomId, pdu: p.pdu });
    }
    const last = persisted[persisted.length - 1];
    if (last) {
      await trx.deleteFrom('forward_extremities').where('room_nid', '=', roomNid).execute();
      await trx
        .insertInto('forward_extremities')
        .values({ room_nid: roomNid, event_nid: last.eventNid })
        .execute();
      working.extremities = [
        {
          eventId: last.eventId,
          eventNid: last.eventNid,
          depth: last.pdu.depth,
          refHash: referenceHashOf(last.pdu, working.version),
        },
      ];
    }
    await trx
      .updateTable('rooms')
      .set({ current_snapshot_nid: working.snapshot.nid })
      .where('room_nid', '=', roomNid)
      .execute();
    if (txn && last) {
      await trx
        .insertInto('event_txn_ids')
        .values({
          user_id: txn.userId,
          device_id: txn.deviceId,
          txn_id: txn.txnId,
          event_nid: last.eventNid,
          created_ts: Date.now(),
        })
        .execute();
    }
    return { newHead: working, persisted };
  }

  /** A state event: a new snapshot (delta, or full when the chain is long), current state and memberships. */
  async #writeState(
    trx: Transaction<Database>,
    working: RoomHead,
    p: Prepared,
    eventNid: number,
    pos: number,
  ): Promise<RoomHead> {
    const { pdu } = p;
    const key = stateKey(pdu.type, pdu.state_key as string);
    const next = applyToHead(working, pdu, p.eventId, eventNid);
    let entries: Map<string, number>;
    let parent: { nid: number; chainLen: number } | null;
    if (working.snapshot.chainLen + 1 > MAX_CHAIN) {
      entries = new Map([...next.state].map(([k, e]) => [k, e.eventNid]));
      parent = null;
    } else {
      entries = new Map([[key, eventNid]]);
      parent = working.snapshot;
    }
    next.snapshot = await insertSnapshot(trx, working.roomNid, parent, entries);
    await trx
      .insertInto('current_state')
      .values({
        room_nid: working.roomNid,
        type: pdu.type,
        state_key: pdu.state_key as string,
        event_nid: eventNid,
      })
      .onConflict((oc) => oc.columns(['room_nid', 'type', 'state_key']).doUpdateSet({ event_nid: eventNid }))
      .execute();
    if (pdu.type === 'm.room.member') {
      const membership = typeof pdu.content.membership === 'string' ? pdu.content.membership : 'leave';
      await trx
        .insertInto('room_members')
        .values({
          room_nid: working.roomNid,
          user_id: pdu.state_key as string,
          membership,
          event_nid: eventNid,
          stream_ordering: pos,
          forgotten: 0,
        })
        .onConflict((oc) =>
          oc
            .columns(['room_nid', 'user_id'])
            .doUpdateSet({ membership, event_nid: eventNid, stream_ordering: pos, forgotten: 0 }),
        )
        .execute();
    }
    return next;
  }

  #remember(head: RoomHead): void {
    this.#heads.delete(head.roomId);
    this.#heads.set(head.roomId, head);
    // Bounded: heads of rooms not written for a while are dropped and reloaded on demand.
    while (this.#heads.size > 2000) {
      const oldest = this.#heads.keys().next();
      if (oldest.done) break;
      this.#heads.delete(oldest.value);
    }
  }

  /** Waits for every queued write (shutdown). */
  drain(): Promise<void> {
    return this.#queue.drain();
  }
}

/** Relations, redaction targets (unless `applyRedaction` is false) and the search index, written with the event. */
export async function writeSideTables(
  trx: Transaction<Database>,
  engine: Engine,
  p: Prepared,
  eventNid: number,
  roomNid: number,
  applyRedaction = true,
): Promise<void> {
  const rel = p.pdu.content['m.relates_to'];
  if (rel && typeof rel === 'object' && !Array.isArray(rel)) {
    const r = rel as JsonObject;
    if (typeof r.rel_type === 'string' && typeof r.event_id === 'string') {
      await trx
        .insertInto('event_relations')
        .values({
          event_nid: eventNid,
          relates_to_id: r.event_id,
          rel_type: r.rel_type,
          aggregation_key: typeof r.key === 'string' ? r.key : null,
        })
        .execute();
    }
  }
  if (p.pdu.type === 'm.room.redaction' && applyRedaction) {
    const target = typeof p.pdu.redacts === 'string' ? p.pdu.redacts : p.pdu.content.redacts;
    if (typeof target === 'string') {
      await trx
        .updateTable('events')
        .set({ redacted_by: p.eventId })
        .where('event_id', '=', target)
        .where('room_nid', '=', roomNid)
        .where('redacted_by', 'is', null)
        .execute();
    }
  }
  await indexEventForSearch(trx, engine, p.pdu, eventNid, roomNid);
}

function cloneHead(h: RoomHead): RoomHead {
  return { ...h, state: new Map(h.state), extremities: [...h.extremities] };
}

/** The head after `pdu` (state updated, single extremity). Does not touch `head`. */
function applyToHead(head: RoomHead, pdu: Pdu, eventId: string, eventNid = 0): RoomHead {
  const next = cloneHead(head);
  if (pdu.state_key !== undefined) {
    const entry: StateEntry = { eventNid, eventId, pdu };
    next.state.set(stateKey(pdu.type, pdu.state_key), entry);
  }
  next.extremities = [{ eventId, eventNid, depth: pdu.depth, refHash: referenceHashOf(pdu, head.version) }];
  return next;
}
