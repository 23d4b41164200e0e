/**
 * Fan-out: turns what committed locally into per-destination outbox rows.
 *
 * Why stream positions and not rows written with the event: the room writer commits an event and its stream
 * position in one transaction; a durable `federation_sender_position` records how far those commits have been fanned
 * out, and it advances in the same transaction as the outbox rows it covers. Nothing acknowledged to a client can be
 * lost: after a crash (even SIGKILL between an event's commit and its fan-out) the next start fans out again from the
 * stored position. The fan-out reads only up to `stream.current`, below which every position has committed, so an
 * event whose transaction finishes late is never skipped. This is Synapse's design (its federation sender keeps a
 * stream position, and per destination the position the remote acknowledged); unlike Synapse the per-destination
 * queue is rows, so a destination that comes back after a short outage gets every event in order, and only a long
 * backlog is collapsed to the newest event per room (catch-up, see sender.ts).
 *
 * Local events are sent, and remote events this server persisted on another server's behalf (send_join, send_leave,
 * send_knock: marked with markSendOnBehalf), to every server but that one. Destinations of an event: the servers
 * with a joined member in the state before it, plus the server of a user the event itself joins; never this server. Receipts (m.read) of local users go to the servers joined to the room now,
 * device-list changes and (when enabled) presence of local users to the servers sharing a room with them.
 */
import type { Logger } from 'pino';
import type { Storage } from '../../storage/db.js';
import {
  anyRemoteMemberJoined,
  deviceListChangesIn,
  eventsInRange,
  getSenderPosition,
  insertOutboxRows,
  joinedServersOf,
  membershipsOf,
  outboxAddedSince,
  presenceStampedIn,
  receiptsStampedIn,
  remoteWriteCount,
  sendOnBehalfOf,
  serversSharingRoomWith,
  setSenderPosition,
  type FanoutEvent,
  type NewOutboxRow,
} from '../../storage/federation-queue.js';
import { getCrossSigningKeys, listDeviceKeys } from '../../storage/e2ee-keys.js';
import { listDevices } from '../../storage/devices.js';
import { loadSnapshot, splitStateKey } from '../../storage/state.js';

/** Events read per fan-out step (each step is one transaction). */
const STEP_EVENTS = 500;
const SNAPSHOT_CACHE = 256;
/** Steps that queue nothing persist their position at most this often (positions / milliseconds). */
const PERSIST_EVERY_POSITIONS = 1000;
const PERSIST_EVERY_MS = 5000;

export interface FanoutDeps {
  storage: Storage;
  serverName: string;
  log: Logger;
  /** presence.enabled: local users' presence changes go to the servers sharing a room with them. */
  presenceEnabled?: boolean | undefined;
  /** Called with the destinations of outbox rows added since the last call (all of them on the first). */
  onQueued(destinations: Iterable<string>): void;
}

const serverOf = (userId: string): string => userId.slice(userId.indexOf(':') + 1);

export class Fanout {
  readonly #deps: FanoutDeps;
  #running: Promise<void> | undefined;
  #again = false;
  #unsubscribe: (() => void) | undefined;
  /** snapshot nid → remote servers with a joined member in that state (immutable). */
  #servers = new Map<number, Set<string>>();
  /** Highest outbox row id already announced through onQueued. */
  #announced = 0;
  /** How far this process has fanned out (ahead of the stored position while the steps found nothing to queue). */
  #position: number | undefined;
  /** The position last written to federation_sender_position by this process. */
  #persisted: number | undefined;
  #persistedAt = 0;
  /**
   * Set while no server but this one is in any room and no write that could change that (or queue outbox rows) was
   * noted since `writes` (storage/federation-queue.ts noteRemoteWrite): steps then read nothing, as local events,
   * receipts, device lists and presence have no destination. A single-server install stays in this state.
   */
  #alone: { writes: number } | undefined;

  constructor(deps: FanoutDeps) {
    this.#deps = deps;
  }

  /** Starts from the stored position (the current one on the very first start) and follows the stream. */
  async start(): Promise<void> {
    const { db, stream } = this.#deps.storage;
    let stored = await getSenderPosition(db);
    if (stored === undefined) {
      stored = stream.current;
      await setSenderPosition(db, stored);
    }
    this.#position = this.#persisted = stored;
    this.#persistedAt = Date.now();
    this.#unsubscribe = stream.onAdvance(() => this.poke());
    this.poke();
  }

  /** Runs a fan-out pass (or another one after the running pass). */
  poke(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
    });
  }

  /** The stream position fanned out so far (the stored one may lag behind while nothing was queued). */
  get position(): number | undefined {
    return this.#position;
  }

  /** Fans out again from an earlier position (rows queued again are sent again). */
  async replayFrom(position: number): Promise<void> {
    await this.idle();
    this.#alone = undefined;
    await setSenderPosition(this.#deps.storage.db, position);
    this.#position = this.#persisted = position;
    this.#persistedAt = Date.now();
    this.poke();
  }

  /** Resolves when no pass is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async close(): Promise<void> {
    this.#unsubscribe?.();
    await this.idle();
    // Spares the next start a replay of steps that queued nothing.
    await this.#persistPosition().catch((err: unknown) => {
      this.#deps.log.warn({ err }, 'federation fan-out position not saved at shutdown');
    });
  }

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      try {
        while (await this.#step());
        // Alone, nothing was queued since the last announcement (every outbox write is noted).
        if (this.#alone?.writes !== remoteWriteCount()) await this.#announce();
      } catch (err) {
        // The next stream advance retries from the stored position.
        this.#deps.log.warn({ err }, 'federation fan-out failed');
        return;
      }
    } while (this.#again);
  }

  /** Fans out one step; true when more is waiting. */
  async #step(): Promise<boolean> {
    const { db, stream } = this.#deps.storage;
    const from = this.#position ?? (await getSenderPosition(db)) ?? stream.current;
    let to = stream.current;
    if (to <= from) return false;
    const writes = remoteWriteCount();
    if (this.#alone?.writes === writes) {
      await this.#advanceQuietly(to);
      return false;
    }
    // Everything allocated has finished (so committed) and is covered by this step: if this step queues nothing
    // and no other server is in a room, later steps may skip until a remote write is noted.
    const settled = stream.allocated === to;
    this.#alone = undefined;
    const events = await eventsInRange(db, from, to, STEP_EVENTS + 1);
    let more = false;
    if (events.length > STEP_EVENTS) {
      const last = events[STEP_EVENTS - 1] as FanoutEvent;
      to = last.stream_ordering;
      events.length = STEP_EVENTS;
      more = true;
    }
    const rows: NewOutboxRow[] = [];
    const remote = events
      .filter((ev) => serverOf(ev.sender) !== this.#deps.serverName)
      .map((ev) => ev.event_id);
    const onBehalf = remote.length ? await sendOnBehalfOf(db, remote) : new Map<string, string>();
    for (const ev of events) {
      const origin = onBehalf.get(ev.event_id);
      if (serverOf(ev.sender) !== this.#deps.serverName && origin === undefined) continue;
      for (const destination of await this.#serversAt(ev)) {
        // The server we relay for has the event already.
        if (destination === origin) continue;
        rows.push({
          destination,
          event_nid: ev.event_nid,
          room_nid: ev.room_nid,
          edu_type: null,
          edu_content: null,
        });
      }
    }
    rows.push(...(await this.#receiptRows(from, to)));
    rows.push(...(await this.#deviceListRows(from, to)));
    if (this.#deps.presenceEnabled) rows.push(...(await this.#presenceRows(from, to)));
    if (rows.length === 0) {
      if (settled && !more && !(await anyRemoteMemberJoined(db, this.#deps.serverName))) {
        // Outbox rows other writers committed up to here are announced before steps start skipping.
        await this.#announce();
        this.#alone = { writes };
      }
      await this.#advanceQuietly(to);
      return more;
    }
    await db.transaction().execute(async (trx) => {
      // Another process may have moved the position: never fan out the same range twice.
      const stored = await getSenderPosition(trx);
      if (stored !== undefined && stored !== (this.#persisted ?? from)) {
        this.#deps.log.warn(
          { stored, expected: this.#persisted },
          'federation fan-out position moved elsewhere',
        );
        this.#position = this.#persisted = stored;
        return;
      }
      await insertOutboxRows(trx, rows, Date.now());
      await setSenderPosition(trx, to);
      this.#position = this.#persisted = to;
      this.#persistedAt = Date.now();
    });
    return more;
  }

  /**
   * Moves past steps that queue nothing: no transaction (and no fsync) on the event path. A crash replays these
   * steps from the stored position, and they queue nothing again (the state before an event never changes).
   */
  async #advanceQuietly(to: number): Promise<void> {
    this.#position = to;
    if (
      to - (this.#persisted ?? to) >= PERSIST_EVERY_POSITIONS ||
      Date.now() - this.#persistedAt >= PERSIST_EVERY_MS
    )
      await this.#persistPosition();
  }

  /** Writes the in-memory position when it is ahead of the stored one (nothing queued in between). */
  async #persistPosition(): Promise<void> {
    const position = this.#position;
    if (position === undefined || position === this.#persisted) return;
    const expected = this.#persisted;
    await this.#deps.storage.db.transaction().execute(async (trx) => {
      const stored = await getSenderPosition(trx);
      if (stored !== undefined && stored !== expected) return;
      await setSenderPosition(trx, position);
    });
    this.#persisted = position;
    this.#persistedAt = Date.now();
  }

  /**
   * Wakes the destinations of every outbox row added since the last pass: the rows fanned out here and those other
   * writers add in their own transaction at a stream position (to-device messages to remote users).
   */
  async #announce(): Promise<void> {
    const added = await outboxAddedSince(this.#deps.storage.db, this.#announced);
    if (added.maxId > this.#announced) this.#announced = added.maxId;
    if (added.destinations.length) this.#deps.onQueued(added.destinations);
  }

  async #serversAt(ev: FanoutEvent): Promise<Set<string>> {
    const out = new Set(ev.state_snapshot_nid === null ? [] : await this.#serversIn(ev));
    if (ev.type === 'm.room.member' && ev.state_key) {
      try {
        const content = (JSON.parse(ev.json) as { content?: { membership?: unknown } }).content;
        if (content?.membership === 'join') out.add(serverOf(ev.state_key));
      } catch {
        // unreadable JSON: the state before decides
      }
    }
    out.delete(this.#deps.serverName);
    return out;
  }

  async #serversIn(ev: FanoutEvent): Promise<Set<string>> {
    const nid = ev.state_snapshot_nid as number;
    const cached = this.#servers.get(nid);
    if (cached) return cached;
    const { db } = this.#deps.storage;
    const snapshot = await loadSnapshot(db, nid, ev.room_nid);
    const remote = new Map<number, string>();
    for (const [key, eventNid] of snapshot?.map ?? []) {
      const [type, stateKey] = splitStateKey(key);
      if (type !== 'm.room.member') continue;
      const server = serverOf(stateKey);
      if (server !== this.#deps.serverName) remote.set(eventNid, server);
    }
    const memberships = await membershipsOf(db, [...remote.keys()]);
    const servers = new Set<string>();
    for (const [eventNid, server] of remote) if (memberships.get(eventNid) === 'join') servers.add(server);
    if (this.#servers.size >= SNAPSHOT_CACHE) {
      const oldest = this.#servers.keys().next().value;
      if (oldest !== undefined) this.#servers.delete(oldest);
    }
    this.#servers.set(nid, servers);
    return servers;
  }

  async #receiptRows(from: number, to: number): Promise<NewOutboxRow[]> {
    const { db } = this.#deps.storage;
    const rows: NewOutboxRow[] = [];
    for (const r of await receiptsStampedIn(db, from, to)) {
      if (serverOf(r.user_id) !== this.#deps.serverName) continue;
      let data: Record<string, unknown> = {};
      try {
        data = JSON.parse(r.data) as Record<string, unknown>;
      } catch {
        // keep an empty data object
      }
      if (r.thread_id) data = { ...data, thread_id: r.thread_id };
      const content = {
        [r.room_id]: { [r.receipt_type]: { [r.user_id]: { event_ids: [r.event_id], data } } },
      };
      for (const destination of await joinedServersOf(db, r.room_nid)) {
        if (destination === this.#deps.serverName) continue;
        rows.push({
          destination,
          event_nid: null,
          room_nid: r.room_nid,
          edu_type: 'm.receipt',
          edu_content: JSON.stringify(content),
        });
      }
    }
    return rows;
  }

  /** One m.presence EDU per change of a local user's presence, to the servers sharing a room with them. */
  async #presenceRows(from: number, to: number): Promise<NewOutboxRow[]> {
    const { db } = this.#deps.storage;
    const rows: NewOutboxRow[] = [];
    const now = Date.now();
    for (const p of await presenceStampedIn(db, from, to)) {
      if (serverOf(p.user_id) !== this.#deps.serverName) continue;
      const servers = await serversSharingRoomWith(db, p.user_id);
      servers.delete(this.#deps.serverName);
      const content = JSON.stringify({
        push: [
          {
            user_id: p.user_id,
            presence: p.state,
            last_active_ago: Math.max(0, now - p.last_active_ts),
            currently_active: p.currently_active === 1,
            ...(p.status_msg !== null ? { status_msg: p.status_msg } : {}),
          },
        ],
      });
      for (const destination of servers)
        rows.push({
          destination,
          event_nid: null,
          room_nid: null,
          edu_type: 'm.presence',
          edu_content: content,
        });
    }
    return rows;
  }

  /**
   * One m.device_list_update per current device of each local user whose devices changed (the change rows do not
   * say which device changed), with an empty `prev_id`: Synapse resyncs such a user through /user/devices, Hearth
   * marks the user changed. With cross-signing keys, an m.signing_key_update carries the current public ones.
   */
  async #deviceListRows(from: number, to: number): Promise<NewOutboxRow[]> {
    const { db } = this.#deps.storage;
    const rows: NewOutboxRow[] = [];
    for (const change of await deviceListChangesIn(db, from, to)) {
      if (serverOf(change.user_id) !== this.#deps.serverName) continue;
      const servers = await serversSharingRoomWith(db, change.user_id);
      servers.delete(this.#deps.serverName);
      if (servers.size === 0) continue;
      const devices = await listDevices(db, change.user_id);
      const keys = new Map(
        (await listDeviceKeys(db, change.user_id, [])).map((k) => [k.device_id, k.key_json] as const),
      );
      const edus = devices.map((d) => {
        const keyJson = keys.get(d.device_id);
        return JSON.stringify({
          user_id: change.user_id,
          device_id: d.device_id,
          ...(d.display_name !== null ? { device_display_name: d.display_name } : {}),
          stream_id: change.stream_pos,
          prev_id: [],
          deleted: false,
          ...(keyJson !== undefined ? { keys: JSON.parse(keyJson) as unknown } : {}),
        });
      });
      // A user with no device left still tells the servers to resync.
      if (edus.length === 0)
        edus.push(
          JSON.stringify({
            user_id: change.user_id,
            device_id: '',
            stream_id: change.stream_pos,
            prev_id: [],
            deleted: true,
          }),
        );
      const typed = edus.map((edu) => ({ type: 'm.device_list_update', edu }));
      // The user's public cross-signing keys as they are now (the change may have been to them).
      const crossSigning: Record<string, unknown> = {};
      for (const k of await getCrossSigningKeys(db, [change.user_id])) {
        if (k.key_type === 'master') crossSigning.master_key = JSON.parse(k.key_json) as unknown;
        else if (k.key_type === 'self_signing')
          crossSigning.self_signing_key = JSON.parse(k.key_json) as unknown;
      }
      if (Object.keys(crossSigning).length)
        typed.push({
          type: 'm.signing_key_update',
          edu: JSON.stringify({ user_id: change.user_id, ...crossSigning }),
        });
      for (const destination of servers)
        for (const { type, edu } of typed)
          rows.push({ destination, event_nid: null, room_nid: null, edu_type: type, edu_content: edu });
    }
    return rows;
  }
}
