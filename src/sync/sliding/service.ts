/**
 * Simplified sliding sync (MSC4186) as a read model over the same tables, reader and notifier as /sync v2.
 *
 * A request names a connection (user, device, conn_id) and the `pos` of the last response it processed. The
 * connection's state at that pos (what each room was last sent with, stored per response in the database, so a
 * restart changes nothing) decides what is new. One query lists the user's rooms with their bump stamps; only the
 * rooms inside the lists' ranges and the subscriptions cost per-room work. An empty incremental answer waits on the
 * notifier (registered before computing, as /sync does) until something happens or the timeout passes.
 */
import { MatrixError } from '../../api/errors.js';
import type { ClientEvent, JsonObject } from '../../rooms/event.js';
import { bundleAggregations } from '../../read/aggregations.js';
import { LruCache } from '../../cache/lru.js';
import { loadPushRules } from '../../push/rules-store.js';
import { userRooms, type UserRoomRow } from '../../storage/sliding-sync.js';
import {
  expireConnections,
  loadState,
  resetConnection,
  trimConnections,
  type SentRoomRow,
} from '../../storage/sliding-sync-connections.js';
import type { SyncDeps } from '../sync.js';
import type { RoomConfig, SlidingRequest } from './request.js';
import { RoomBatch, SharedTimelines } from './batch.js';
import { PositionSaver } from './position-saver.js';
import { WakeGate } from './wake-gate.js';
import { combine } from './required-state.js';
import { SlidingUnread } from './unread.js';
import {
  applyFilters,
  FilterFacts,
  inRanges,
  listableRooms,
  withoutExcludedInvites,
  type ListedRoom,
} from './room-list.js';
import { syncExclusions } from '../ignored.js';
import { fullRoom, strippedRoom, type BuildContext, type RoomOutcome } from './room-result.js';

/** Where a response ends: the global stream position and the typing serial (the extensions' positions). */
export interface SlidingPosition {
  stream: number;
  typing: number;
}

export interface ExtensionsInput {
  userId: string;
  deviceId: string;
  connKey: string;
  since: SlidingPosition | null;
  to: SlidingPosition;
  listRooms: ReadonlyMap<string, readonly string[]>;
  subscribedRooms: readonly string[];
}

export type ExtensionsFn = (
  deps: SyncDeps,
  request: unknown,
  input: ExtensionsInput,
) => Promise<{ extensions: JsonObject; hasData: boolean }>;

/** Memberships whose rooms a long-poll watches. */
const ACTIVE = new Set(['join', 'invite', 'knock']);

/** Connections unused this long are forgotten (their next request gets M_UNKNOWN_POS). */
export const CONNECTION_TTL_MS = 7 * 24 * 3600_000;
/** A connection's last-used stamp is renewed when older than this (a write saved on most requests). */
const TOUCH_AFTER_MS = 60_000;
/** Woken long-polls computing at once on PostgreSQL. */
const WOKEN_AT_ONCE_PG = 3;
/** How long a (re)issued long-poll waits at most for the woken ones to answer. */
const YIELD_TO_WOKEN_MS = 20;
/** How long a position's save waits at most for the responses being computed to be sent. */
const QUIET_WAIT_MS = 50;
/** Connections kept per device (the least recently used beyond are dropped). */
export const MAX_CONNECTIONS_PER_DEVICE = 50;

interface Connection {
  /** (user, device, conn_id) as one string. */
  key: string;
  connNid: number;
  posNid: number | null;
  /** The connection's last-used stamp is old enough to be renewed with the next position. */
  stale: boolean;
  since: SlidingPosition | null;
  sent: Map<string, SentRoomRow>;
  /** The lists' counts in the response `pos` named (null: initial, or not recorded). */
  listCounts: Record<string, number> | null;
}

/** `pos` is `s<stream>_<typing>_<position id>`: usable as a /messages token, like a /sync next_batch. */
function formatPos(at: SlidingPosition, posNid: number): string {
  return `s${at.stream}_${at.typing}_${posNid}`;
}

function parsePos(pos: string): { stream: number; posNid: number } {
  const m = /^s(-?\d{1,15})_\d{1,15}_(\d{1,15})$/.exec(pos);
  if (!m) throw new MatrixError('M_UNKNOWN_POS', 'Unknown position');
  return { stream: Number(m[1]), posNid: Number(m[2]) };
}

export class SlidingSyncService {
  readonly #unread = new SlidingUnread();
  readonly #saver: PositionSaver;
  /** The connection id each (user, device, conn_id) has now: an answer on a connection restarted meanwhile fails. */
  readonly #live = new LruCache<string, number>('sliding_connections', 100_000);
  /** Timeline rows shared by the computations of one room and position (the connections a message wakes). */
  readonly #timelines = new SharedTimelines();
  /** Woken long-polls computing at once. */
  readonly #gate: WakeGate;
  /** Responses being computed now, and what waits for there to be none. */
  #computing = 0;
  readonly #whenQuiet: (() => void)[] = [];

  constructor(
    private readonly deps: SyncDeps,
    private readonly extensions?: ExtensionsFn,
  ) {
    this.#saver = new PositionSaver(deps.storage.db, () => this.#quiet());
    // SQLite reads take turns on one connection: one at a time; PostgreSQL overlaps a few answers' round trips.
    this.#gate = new WakeGate(deps.storage.engine === 'sqlite' ? 1 : WOKEN_AT_ONCE_PG);
  }

  /**
   * Resolves once no response is being computed and no woken long-poll is in line, or after QUIET_WAIT_MS (saves
   * are not put off for long).
   */
  #quiet(): Promise<void> {
    if (this.#computing === 0 && !this.#gate.busy) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, QUIET_WAIT_MS);
      const check = (): void => {
        if (this.#computing > 0) this.#whenQuiet.push(check);
        else if (this.#gate.busy) this.#gate.whenIdle(check);
        else {
          clearTimeout(timer);
          resolve();
        }
      };
      check();
    });
  }

  /** Runs `fn` counted as a computation (see #quiet). */
  async #counted<T>(fn: () => Promise<T>): Promise<T> {
    this.#computing++;
    try {
      return await fn();
    } finally {
      if (--this.#computing === 0) for (const done of this.#whenQuiet.splice(0)) done();
    }
  }

  async sync(req: SlidingRequest, userId: string, deviceId: string): Promise<JsonObject> {
    const deadline = Date.now() + req.timeoutMs;
    // A long-poll (re)issued while woken ones are answering waits for them first (see wake-gate.ts).
    if (req.pos !== undefined && req.timeoutMs > 0) await this.#gate.idle(YIELD_TO_WOKEN_MS);
    // Held from a wake until the answer is computed (or the poll waits again): see wake-gate.ts.
    let slot: (() => void) | undefined;
    try {
      return await this.#poll(req, userId, deviceId, deadline, (s) => (slot = s));
    } finally {
      slot?.();
    }
  }

  async #poll(
    req: SlidingRequest,
    userId: string,
    deviceId: string,
    deadline: number,
    hold: (slot: (() => void) | undefined) => void,
  ): Promise<JsonObject> {
    const { storage, notifier } = this.deps;
    let conn: Connection | undefined;
    let slot: (() => void) | undefined;
    for (;;) {
      const remaining = deadline - Date.now();
      // Only a request continuing a connection (naming a `pos`: conn.since is set) waits.
      const waitable = req.pos !== undefined && remaining > 0;
      // Registered before anything is read: a change of the user's memberships (which notifies the user) or anything
      // else for them after this point wakes it. The rooms are watched once known; events in them committed between
      // `at` and watching them are found in the room change cache below.
      const waiter = notifier.register(userId, [], waitable ? remaining : 0);
      try {
        const at = storage.stream.current;
        // The connection's state is read once, alongside the first room list (two round trips at once).
        const [loaded, rows] = await Promise.all([
          conn ?? this.#connection(req, userId, deviceId),
          userRooms(storage.db, userId, at),
        ]);
        conn = loaded;
        const watched = rows.filter((r) => ACTIVE.has(r.membership)).map((r) => r.roomId);
        if (waitable) waiter.watchRooms(watched);
        const c = conn;
        const computed = await this.#counted(() => this.#compute(req, userId, deviceId, c, rows, at));
        if (computed.hasData || !waitable) return await this.#counted(() => this.#finish(c, computed));
        if (this.#missed(watched, at)) continue;
        slot?.();
        hold((slot = undefined));
        const woken = await waiter.woken;
        if (woken) hold((slot = await this.#gate.acquire()));
        if (!woken) {
          const end = storage.stream.current;
          const latest = await userRooms(storage.db, userId, end);
          return await this.#finish(conn, await this.#compute(req, userId, deviceId, conn, latest, end));
        }
      } finally {
        waiter.cancel();
      }
    }
  }

  /** Whether a watched room may have had an event after `at` (committed before the waiter watched it). */
  #missed(watched: readonly string[], at: number): boolean {
    const { roomChanges, storage } = this.deps;
    if (storage.stream.current <= at) return false;
    const changed = roomChanges?.maybeChangedSince(watched, at);
    return changed === undefined || changed.size > 0;
  }

  /** Waits for the positions still being saved (before the database closes). */
  async drain(): Promise<void> {
    await this.#saver.drain();
  }

  async #connection(req: SlidingRequest, userId: string, deviceId: string): Promise<Connection> {
    const { db } = this.deps.storage;
    const now = Date.now();
    const key = JSON.stringify([userId, deviceId, req.connId]);
    if (req.pos === undefined) {
      const connNid = await resetConnection(db, userId, deviceId, req.connId, now);
      this.#live.set(key, connNid);
      await trimConnections(db, userId, deviceId, MAX_CONNECTIONS_PER_DEVICE);
      await expireConnections(db, now - CONNECTION_TTL_MS);
      return { key, connNid, posNid: null, stale: false, since: null, sent: new Map(), listCounts: null };
    }
    const { stream, posNid } = parsePos(req.pos);
    // The answer that handed out this position may still be saving it.
    await this.#saver.saved(posNid);
    const state = await loadState(db, userId, deviceId, req.connId, posNid);
    // A position lost in a crash may have had its id handed out again: the stream in the token tells them apart.
    if (!state || state.lastUsedTs < now - CONNECTION_TTL_MS || state.position.stream !== stream)
      throw new MatrixError('M_UNKNOWN_POS', 'Unknown position: start a new connection');
    if (this.#live.get(key) === undefined) this.#live.set(key, state.connNid);
    const current = this.deps.storage.stream.current;
    return {
      key,
      connNid: state.connNid,
      posNid,
      stale: state.lastUsedTs < now - TOUCH_AFTER_MS,
      // A position from the future (a restored database) counts as now.
      since: { stream: Math.min(state.position.stream, current), typing: state.position.typing },
      sent: state.rooms,
      listCounts: state.position.listCounts,
    };
  }

  async #finish(conn: Connection, c: Computed): Promise<JsonObject> {
    const posNid = await this.#saver.allocate();
    const live = this.#live.get(conn.key);
    if (live !== undefined && live !== conn.connNid)
      throw new MatrixError('M_UNKNOWN_POS', 'The connection was restarted by a newer request');
    // Saved after the answer is sent (see position-saver.ts): the commit's fsync is not on the answer's path.
    this.#saver.saveLater({
      posNid,
      connNid: conn.connNid,
      parent: conn.posNid,
      at: c.to,
      listCounts: c.listCounts,
      rooms: c.sent,
      now: Date.now(),
      touch: conn.stale,
    });
    return { pos: formatPos(c.to, posNid), ...c.body };
  }

  async #compute(
    req: SlidingRequest,
    userId: string,
    deviceId: string,
    conn: Connection,
    stored: UserRoomRow[],
    at: number,
  ): Promise<Computed> {
    const { storage, reader, typing } = this.deps;
    // Invites from ignored users (all of them while invites are blocked) are in no list and no subscription.
    const rows = withoutExcludedInvites(stored, await syncExclusions(storage.db, userId));
    // The rows' bump stamps and latest positions are as of `at`: the response ends there.
    const to: SlidingPosition = { stream: at, typing: typing.serial };
    const all = listableRooms(rows, userId, (id) => conn.sent.has(id), req.flavour === 'v4');
    const facts = new FilterFacts(storage, reader, userId, all);
    const configs = new Map<string, { room: ListedRoom; configs: RoomConfig[]; lists: string[] }>();
    const lists: JsonObject = {};
    const listRooms = new Map<string, string[]>();
    const listCounts: Record<string, number> = {};
    for (const [name, list] of req.lists) {
      const filtered = await applyFilters(all, list.filters, facts);
      const window = inRanges(filtered, list);
      lists[name] = { count: filtered.length };
      listCounts[name] = filtered.length;
      listRooms.set(
        name,
        window.map((r) => r.roomId),
      );
      for (const r of window) {
        const entry = configs.get(r.roomId) ?? { room: r, configs: [], lists: [] };
        entry.configs.push(list);
        entry.lists.push(name);
        configs.set(r.roomId, entry);
      }
    }
    // Subscriptions: any room the user has (or had) a membership in; others are ignored.
    const byId = new Map(all.map((r) => [r.roomId, r]));
    const subscribed: string[] = [];
    if (req.subscriptions.size) {
      const everything = new Map(rows.map((r) => [r.roomId, r]));
      for (const [roomId, config] of req.subscriptions) {
        const row = byId.get(roomId) ?? everything.get(roomId);
        if (!row || row.forgotten) continue;
        const room = byId.get(roomId) ?? { ...row, bumpStamp: row.membershipStream, sortKey: 0 };
        const entry = configs.get(roomId) ?? { room, configs: [], lists: [] };
        entry.configs.push(config);
        configs.set(roomId, entry);
        subscribed.push(roomId);
      }
    }

    const ctx: BuildContext = {
      deps: this.deps,
      userId,
      deviceId,
      flavour: req.flavour,
      since: conn.since?.stream ?? null,
      to: to.stream,
      batch: new RoomBatch(storage.db, userId, deviceId, this.#timelines, this.deps.roomChanges),
    };
    // The rooms are built concurrently so that their reads batch (see batch.ts); the response keeps config order.
    const built = await Promise.all(
      [...configs].map(([roomId, e]) => {
        const input = {
          room: e.room,
          config: combine(e.configs),
          prev: conn.sent.get(roomId),
          lists: e.lists,
        };
        const stripped = e.room.membership === 'invite' || e.room.membership === 'knock';
        return stripped ? strippedRoom(ctx, input) : fullRoom(ctx, input);
      }),
    );
    const outcomes = new Map<string, RoomOutcome>();
    [...configs.keys()].forEach((roomId, i) => {
      const out = built[i];
      if (out) outcomes.set(roomId, out);
    });
    // The rooms' decorations and the extensions are independent: their reads run at once.
    const decorated = (async () => {
      // m.direct is read only when some room is sent (an empty long-poll round does not need it).
      const dms = outcomes.size ? await facts.dmRooms() : new Set<string>();
      for (const [roomId, o] of outcomes) if (dms.has(roomId)) o.body.is_dm = true;
      await this.#decorate(req, userId, deviceId, outcomes, configs, to.stream);
    })();
    const ext = this.extensions
      ? this.extensions(this.deps, req.extensions, {
          userId,
          deviceId,
          connKey: conn.key,
          since: conn.since,
          to,
          listRooms,
          subscribedRooms: subscribed,
        })
      : Promise.resolve({ extensions: {}, hasData: false });
    const [, { extensions, hasData: extData }] = await Promise.all([decorated, ext]);

    const rooms: JsonObject = {};
    for (const [roomId, o] of outcomes) rooms[roomId] = o.body;
    return {
      to,
      body: { lists, rooms, extensions },
      sent: [...outcomes.values()].map((o) => o.sent),
      listCounts,
      // A list whose count changed (a room joined or left outside its window) is news too.
      hasData: outcomes.size > 0 || extData || countsChanged(conn.listCounts, listCounts),
    };
  }

  /** Bundled aggregations for every timeline, and (unstable API) unread counts of the joined rooms, in bulk. */
  async #decorate(
    req: SlidingRequest,
    userId: string,
    deviceId: string,
    outcomes: Map<string, RoomOutcome>,
    configs: Map<string, { room: ListedRoom }>,
    to: number,
  ): Promise<void> {
    const { storage, reader } = this.deps;
    // A room whose timeline starts after the last relation the change cache knows of has nothing to bundle.
    const { roomChanges } = this.deps;
    const bundled = [...outcomes].filter(
      ([roomId, o]) =>
        o.timeline.length > 0 &&
        (!roomChanges ||
          o.timelineFrom === null ||
          roomChanges.mayHave('relation', roomId, o.timelineFrom - 1)),
    );
    const events = bundled.flatMap(([, o]) => o.timeline) as unknown as ClientEvent[];
    const bundling = events.length
      ? bundleAggregations({ storage, reader }, events, { userId, deviceId })
      : Promise.resolve();
    await Promise.all([bundling, this.#unreadCounts(req, userId, outcomes, configs, to)]);
  }

  /** (Unstable API) unread counts of the joined rooms, in bulk. */
  async #unreadCounts(
    req: SlidingRequest,
    userId: string,
    outcomes: Map<string, RoomOutcome>,
    configs: Map<string, { room: ListedRoom }>,
    to: number,
  ): Promise<void> {
    const { storage, reader } = this.deps;
    if (req.flavour !== 'unstable') return;
    const joined = [...outcomes.keys()]
      .map((id) => configs.get(id)?.room)
      .filter((r): r is ListedRoom => r?.membership === 'join');
    if (!joined.length) return;
    const counts = await this.#unread.counts(
      {
        db: storage.db,
        reader,
        rules: () => loadPushRules(storage, userId),
        ...(this.deps.roomChanges ? { changes: this.deps.roomChanges } : {}),
        ignored: (await syncExclusions(storage.db, userId)).ignored,
      },
      userId,
      joined.map((r) => ({ roomNid: r.roomNid, roomId: r.roomId, joinedAt: r.membershipStream })),
      to,
    );
    for (const r of joined) {
      const c = counts.get(r.roomNid) ?? { notification_count: 0, highlight_count: 0 };
      const body = outcomes.get(r.roomId)?.body;
      if (body) Object.assign(body, c);
    }
  }
}

/** Whether a list the previous response also carried has another count now (unknown before: no). */
function countsChanged(before: Record<string, number> | null, now: Record<string, number>): boolean {
  if (before === null) return false;
  return Object.entries(now).some(([name, n]) => before[name] !== undefined && before[name] !== n);
}

interface Computed {
  to: SlidingPosition;
  body: JsonObject;
  sent: SentRoomRow[];
  listCounts: Record<string, number>;
  hasData: boolean;
}
