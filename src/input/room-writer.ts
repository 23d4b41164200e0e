/**
 * The one place that writes room events. Per room: a queue serialises writes; each event is built, signed and
 * checked against the auth rules; then the event, its JSON, graph edges, state snapshot, stream ordering, the
 * room's current state, forward extremities and membership read model commit in ONE transaction; only then are
 * caches updated and listeners notified.
 */
import { randomBytes } from 'node:crypto';
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
import { databaseUnavailable } from '../integrity/db-errors.js';
import type { Storage } from '../storage/db.js';
import { isUniqueViolation } from '../storage/dialect.js';
import { noteRemoteWrite } from '../storage/federation-queue.js';
import { findTxnEvent, findTxnEvents, getEventRowById } from '../storage/events.js';
import { stateKey } from '../storage/state.js';
import { KeyedQueue } from '../util/keyed-queue.js';
import {
  applyToHead,
  cloneHead,
  writeGroupRows,
  writeRoomEvents,
  writeSideTables,
  type GroupRows,
  type PersistedEvent,
  type Prepared,
  type TxnKey,
} from './commit-write.js';
import { GroupCommitter, type GroupJob, type RoomBatch } from './group-commit.js';
import { writeInvite, writeJoinedRoom, type JoinedRoom } from './joined-room.js';
import {
  planRemoteEvent,
  writeOutliers,
  writeRemoteEvent,
  type OutlierEvent,
  type RemoteEvent,
  type RemoteOutcome,
  type WrittenRemote,
} from './remote-events.js';
import { loadRoomHead, lookupIn, referenceHashOf, type RoomHead } from './room-head.js';

export { writeSideTables, type PersistedEvent, type TxnKey };

/** What a caller asks to send; the writer fills in the graph fields, hashes and signature. */
export interface NewEvent {
  type: string;
  sender: string;
  content: JsonObject;
  state_key?: string;
  /** The event an m.room.redaction redacts. */
  redacts?: string;
  /** origin_server_ts other than now (application service timestamp massaging, `?ts=`). */
  originServerTs?: number;
}

export interface CommittedBatch {
  roomId: string;
  events: PersistedEvent[];
}

export type CommitListener = (batch: CommittedBatch) => void;

const MAX_PREV_EVENTS = 10;

type SendInput = { ev: NewEvent; txn?: TxnKey };
type SendResult = { eventId: string; streamOrdering?: number };
type SendJob = GroupJob<SendInput, SendResult>;

/** A room's part of a group: its head, the events to write and the sends answered by other events. */
interface RoomPlan {
  head: RoomHead;
  writes: { job: SendJob; prepared: Prepared }[];
  answers: (
    | { job: SendJob; sameAs: SendJob; eventId?: undefined }
    | { job: SendJob; eventId: string; sameAs?: undefined }
  )[];
}

function txnKeyOf(t: TxnKey): string {
  return JSON.stringify([t.userId, t.deviceId, t.txnId]);
}

/**
 * The head after a committed remote event, when it follows without reading: unchanged for an event kept out of the
 * room (rejected, soft-failed); for an accepted event whose only prev is the room's only extremity, the head with it
 * applied. A merge of extremities (state resolution) and a redaction (it may change a current state event's
 * content) give undefined: the head is reloaded.
 */
function headAfterRemote(
  head: RoomHead,
  plan: Awaited<ReturnType<typeof planRemoteEvent>>,
  written: WrittenRemote,
  ev: RemoteEvent,
): RoomHead | undefined {
  if (plan.status === 'duplicate') return head;
  if (plan.status !== 'accepted') return head;
  if (!plan.linear || !written.snapshot || plan.pdu.type === 'm.room.redaction') return undefined;
  return { ...applyToHead(head, ev.raw, ev.eventId, written.eventNid), snapshot: written.snapshot };
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
  #group: GroupCommitter<SendInput, SendResult>;
  #heads = new Map<string, RoomHead>();
  #listeners = new Set<CommitListener>();

  constructor(
    private readonly storage: Storage,
    private readonly serverName: string,
    private readonly key: SigningKey,
  ) {
    // PostgreSQL commits on several connections at once: a few groups of different rooms may be written together.
    const parallel = storage.engine === 'postgres' ? 4 : 1;
    this.#group = new GroupCommitter(this.#queue, (batches) => this.#commitGroup(batches), parallel);
  }

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

  /**
   * A join of another server's user written on this path (after its position, before the position finishes): the
   * federation fan-out, skipping while no other server is in any room, must look again. Local joins leave that as
   * it was, so a server with many local joins and no federation keeps skipping.
   */
  #noteRemoteJoins(prepared: readonly Prepared[]): void {
    const remoteJoin = prepared.some(
      ({ pdu }) =>
        pdu.type === 'm.room.member' &&
        pdu.content.membership === 'join' &&
        typeof pdu.state_key === 'string' &&
        pdu.state_key.slice(pdu.state_key.indexOf(':') + 1) !== this.serverName,
    );
    if (remoteJoin) noteRemoteWrite();
  }

  /** Forgets a cached head (after a repair rewrote the room's rows). */
  invalidate(roomId: string): void {
    this.#heads.delete(roomId);
    noteRemoteWrite();
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
      const events = await this.#commit(head, prepared, { creator, createdTs: now });
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
    return this.#group.submit(roomId, txn ? { ev, txn } : { ev });
  }

  /**
   * Commits one group of sends (group-commit.ts) in one transaction. Each room's events are built in arrival order
   * over the room's head, each one's auth checked against the head after the ones before it. An event refused before
   * the write gets its error and is left out; one whose write fails gets its error and the group is written again
   * without it (the others rebuilt over the committed heads). A transaction id already stored, or used earlier in the
   * group, is answered with its event; a state event identical to the current one with the current one's id.
   *
   * Stored transaction ids are not read up front (a retried request is rare; the read cost a statement per group):
   * the group is written optimistically, and the unique key of event_txn_ids refuses a stored one, rolling the
   * transaction back; the group is then planned again after reading them. A send refused while planning that names
   * a transaction id is answered only after its id is looked up (a retry of a committed send gets its event even if
   * it could no longer be sent, as when it was read first).
   */
  async #commitGroup(batches: RoomBatch<SendInput, SendResult>[]): Promise<void> {
    let rooms = batches.map((b) => ({ roomId: b.roomId, jobs: b.jobs }));
    let txnsChecked = false;
    for (;;) {
      if (txnsChecked) rooms = await this.#answerStoredTxns(rooms);
      const dropped = new Set<SendJob>();
      const refused: { job: SendJob; err: unknown }[] = [];
      const refuse = (job: SendJob, err: unknown): void => {
        dropped.add(job);
        if (!txnsChecked && job.input.txn) refused.push({ job, err });
        else job.reject(err);
      };
      const txnOwners = new Map<string, SendJob>();
      const plans: RoomPlan[] = [];
      for (const r of rooms) {
        const plan = await this.#planRoom(r.roomId, r.jobs, txnOwners, refuse);
        if (plan) plans.push(plan);
      }
      rooms = rooms.map((r) => ({ roomId: r.roomId, jobs: r.jobs.filter((j) => !dropped.has(j)) }));
      const culprit = await this.#writeGroup(plans, txnsChecked);
      if (refused.length) await this.#answerRefused(refused);
      if (culprit === 'txn-stored') {
        txnsChecked = true;
        continue;
      }
      if (!culprit) return;
      rooms = rooms.map((r) => ({ roomId: r.roomId, jobs: r.jobs.filter((j) => j !== culprit) }));
    }
  }

  /** Answers the jobs whose transaction id is stored with its event; returns the rooms' other jobs. */
  async #answerStoredTxns(
    rooms: { roomId: string; jobs: SendJob[] }[],
  ): Promise<{ roomId: string; jobs: SendJob[] }[]> {
    const keyed = rooms.flatMap((r) => r.jobs).flatMap((j) => (j.input.txn ? [j.input.txn] : []));
    const stored = await findTxnEvents(this.storage.db, keyed);
    return rooms.map((r) => ({
      roomId: r.roomId,
      jobs: r.jobs.filter((j) => {
        const existing = j.input.txn && stored.get(txnKeyOf(j.input.txn));
        if (existing) j.resolve({ eventId: existing });
        return !existing;
      }),
    }));
  }

  /** Sends refused while planning, before their transaction ids were read: a stored one answers with its event. */
  async #answerRefused(refused: readonly { job: SendJob; err: unknown }[]): Promise<void> {
    let stored = new Map<string, string>();
    try {
      stored = await findTxnEvents(
        this.storage.db,
        refused.flatMap((r) => (r.job.input.txn ? [r.job.input.txn] : [])),
      );
    } finally {
      for (const { job, err } of refused) {
        const existing = job.input.txn && stored.get(txnKeyOf(job.input.txn));
        if (existing) job.resolve({ eventId: existing });
        else job.reject(err);
      }
    }
  }

  /** Builds a room's jobs over its head; a job refused is handed to `refuse`. */
  async #planRoom(
    roomId: string,
    jobs: readonly SendJob[],
    txnOwners: Map<string, SendJob>,
    refuse: (job: SendJob, err: unknown) => void,
  ): Promise<RoomPlan | undefined> {
    const head = await this.head(roomId);
    if (!head) {
      for (const j of jobs) refuse(j, new MatrixError('M_NOT_FOUND', 'Unknown room'));
      return undefined;
    }
    const working = cloneHead(head);
    const plan: RoomPlan = { head, writes: [], answers: [] };
    for (const job of jobs) {
      const { ev, txn } = job.input;
      try {
        const owner = txn ? txnOwners.get(txnKeyOf(txn)) : undefined;
        if (owner) {
          plan.answers.push({ job, sameAs: owner });
          continue;
        }
        if (ev.state_key !== undefined) {
          const current = working.state.get(stateKey(ev.type, ev.state_key));
          if (
            current &&
            current.pdu.sender === ev.sender &&
            canonicalJson(current.pdu.content) === canonicalJson(ev.content)
          ) {
            plan.answers.push({ job, eventId: current.eventId });
            continue;
          }
        }
        if (ev.type === 'm.room.redaction') await this.#checkRedaction(working, ev);
        const prepared: Prepared = { ...this.#prepare(working, ev), txn };
        if (txn) txnOwners.set(txnKeyOf(txn), job);
        plan.writes.push({ job, prepared });
      } catch (err) {
        refuse(job, err);
      }
    }
    return plan;
  }

  /**
   * Writes the planned rooms in one transaction and answers their jobs. When the write of one event fails, answers
   * that job with the error and returns it (the caller writes the group again without it); a failure that is no
   * one event's (the database unavailable, the commit itself) is thrown, failing every job of the group.
   */
  async #writeGroup(
    plans: readonly RoomPlan[],
    txnsChecked: boolean,
  ): Promise<SendJob | 'txn-stored' | undefined> {
    const stream = this.storage.stream;
    const positions = plans.map((p) => p.writes.map(() => stream.allocate()));
    this.#noteRemoteJoins(plans.flatMap((p) => p.writes.map((w) => w.prepared)));
    const cursor = { room: -1, event: -1, groupRows: false };
    let results: Awaited<ReturnType<typeof writeRoomEvents>>[];
    try {
      results = await this.storage.db.transaction().execute(async (trx) => {
        const out: Awaited<ReturnType<typeof writeRoomEvents>>[] = [];
        const rows: GroupRows = { edges: [], txns: [], search: [], moves: [] };
        for (const [i, plan] of plans.entries()) {
          if (plan.writes.length === 0) continue;
          cursor.room = i;
          const prepared = plan.writes.map((w) => w.prepared);
          out[i] = await writeRoomEvents(
            trx,
            this.storage.engine,
            plan.head,
            prepared,
            positions[i] ?? [],
            cursor,
            undefined,
            rows,
          );
        }
        // The edges and transaction ids of every room at once (a failure here counts as the last event's).
        cursor.groupRows = true;
        await writeGroupRows(trx, this.storage.engine, rows);
        cursor.room = -1;
        return out;
      });
    } catch (err) {
      for (const plan of plans) this.#heads.delete(plan.head.roomId);
      for (const p of positions.flat()) stream.finish(p);
      // Transaction ids not read before: a unique violation among the group's rows may be a stored one.
      if (!txnsChecked && cursor.groupRows && isUniqueViolation(err)) return 'txn-stored';
      const culprit =
        databaseUnavailable(err) === undefined ? plans[cursor.room]?.writes[cursor.event]?.job : undefined;
      if (!culprit) throw err;
      // The same transaction id committed through another path in the meantime: answer with its event.
      const txn = culprit.input.txn;
      const existing =
        txn && isUniqueViolation(err)
          ? await findTxnEvent(this.storage.db, txn.userId, txn.deviceId, txn.txnId)
          : undefined;
      if (existing) culprit.resolve({ eventId: existing });
      else culprit.reject(err);
      return culprit;
    }
    for (const p of positions.flat()) stream.finish(p);
    const ids = new Map<SendJob, SendResult>();
    for (const [i, plan] of plans.entries()) {
      const result = results[i];
      if (!result) continue;
      this.#remember(result.newHead);
      const batch = { roomId: plan.head.roomId, events: result.persisted };
      for (const l of this.#listeners) l(batch);
      for (const [k, w] of plan.writes.entries()) {
        const ev = result.persisted[k];
        if (ev) ids.set(w.job, { eventId: ev.eventId, streamOrdering: ev.streamOrdering });
      }
    }
    for (const [job, r] of ids) job.resolve(r);
    for (const plan of plans) {
      for (const a of plan.answers) {
        const r = a.sameAs ? ids.get(a.sameAs) : { eventId: a.eventId };
        if (r) a.job.resolve(r);
      }
    }
    return undefined;
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
      // Another server's event: the federation fan-out reads again (after the position, before it finishes).
      noteRemoteWrite();
      let written: Awaited<ReturnType<typeof writeRemoteEvent>> | undefined;
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
        // Committed: the head after it, or unchanged for an event kept out of the room's state. Otherwise (failed,
        // or an event the head cannot follow cheaply) it is reloaded from the database when next needed.
        const next = written && headAfterRemote(head, plan, written, ev);
        if (next) this.#remember(next);
        else this.#heads.delete(roomId);
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
      noteRemoteWrite();
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
      noteRemoteWrite();
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
        origin_server_ts: ev.originServerTs ?? Date.now(),
      },
      this.#signing(version),
    );
    refuseOversized(built.pdu);
    // Built only when the rules ask (rarely): a room's whole state is not walked for every message.
    let ids: Map<Pdu, string> | undefined;
    const eventIdOf = (p: Pdu): string => {
      if (!ids) {
        ids = new Map();
        for (const e of working.state.values()) ids.set(e.pdu, e.eventId);
      }
      return ids.get(p) ?? '';
    };
    const result = checkEventAuth(forAuth(built.pdu, version), lookupIn(working.state), version, {
      eventIdOf,
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

  /** Writes prepared events of one room in one transaction and, after commit, updates the head and notifies. */
  async #commit(
    head: RoomHead,
    prepared: Prepared[],
    newRoom?: { creator: string; createdTs: number },
  ): Promise<PersistedEvent[]> {
    const stream = this.storage.stream;
    const positions = prepared.map(() => stream.allocate());
    this.#noteRemoteJoins(prepared);
    let newHead: RoomHead;
    let persisted: PersistedEvent[];
    try {
      ({ newHead, persisted } = await this.storage.db
        .transaction()
        .execute((trx) =>
          writeRoomEvents(trx, this.storage.engine, head, prepared, positions, { event: -1 }, newRoom),
        ));
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
