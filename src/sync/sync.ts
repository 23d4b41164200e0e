/**
 * GET /sync as a read model. A request registers with the notifier before computing, so no commit between the
 * computation and the wait is missed; an empty incremental sync waits until woken or timed out, then recomputes.
 * Everything is read up to `stream.current`, the position below which all writes have committed.
 */
import { MatrixError } from '../api/errors.js';
import type { ClientEvent, JsonObject } from '../rooms/event.js';
import { bundleAggregations } from '../read/aggregations.js';
import type { EventReader, LoadedEvent } from '../read/event-reader.js';
import { formatStreamToken, parseStreamToken } from '../read/tokens.js';
import type { Storage } from '../storage/db.js';
import { listAccountDataSince } from '../storage/account-data.js';
import { loadPushRules, PUSH_RULES_TYPE } from '../push/rules-store.js';
import { eventAllowed, roomAllowed, type SyncContext } from './context.js';
import type { Filter } from './filter.js';
import { formatEvents, strippedState } from './format.js';
import { prefetchTimelines, roomTimelineSection } from './joined-room.js';
import { presenceEventsFor, receiptEventsForRooms, typingEvent } from './ephemeral.js';
import type { Notifier } from './notifier.js';
import type { TypingStore } from './typing.js';
import {
  membershipsOf,
  roomsWithEvents,
  streamActivity,
  type MembershipRow,
  type StreamActivity,
} from './queries.js';
import type { RoomChangeCache } from './change-cache.js';
import { SharedRoomDeltas } from './shared-room-delta.js';
import { unreadCountsForRooms, type UnreadCounts } from './unread.js';
import { FactsMemory, UnreadMemory } from './unread-memory.js';
import type { RoomPushFacts } from '../push/room-push.js';
import { e2eeSync } from './e2ee.js';
import { stateBefore } from './room-state.js';
import { excludeFromSync, syncExclusions } from './ignored.js';

export interface SyncRequest {
  userId: string;
  deviceId: string;
  since: string | undefined;
  timeoutMs: number;
  fullState: boolean;
  filter: Filter;
  useStateAfter: boolean;
}

export interface SyncDeps {
  storage: Storage;
  reader: EventReader;
  notifier: Notifier;
  typing: TypingStore;
  presenceEnabled: boolean;
  /** Rooms with new events since a position, from the writer's commits (queried when absent). */
  roomChanges?: RoomChangeCache;
  /** Filters events the user may not see (history visibility); identity when absent. */
  visible?: (userId: string, events: LoadedEvent[]) => Promise<LoadedEvent[]>;
}

const STRIPPED_TYPES = new Set([
  'm.room.create',
  'm.room.join_rules',
  'm.room.name',
  'm.room.avatar',
  'm.room.canonical_alias',
  'm.room.encryption',
  'm.room.topic',
]);

interface Computed {
  body: JsonObject;
  empty: boolean;
}

/** The rooms whose events concern the user now: joined, invited, knocked. */
function activeRoomIds(memberships: readonly MembershipRow[]): string[] {
  return memberships
    .filter((m) => m.membership === 'join' || m.membership === 'invite' || m.membership === 'knock')
    .map((m) => m.room_id);
}

/** Every stream may have something: an initial sync, or no probe. */
const ALL_ACTIVE: StreamActivity = {
  accountData: true,
  toDevice: true,
  receipts: true,
  presence: true,
  deviceLists: true,
};

export class SyncService {
  /** Room sections shared by the requests woken for the same position. */
  readonly shared = new SharedRoomDeltas();
  /** Unread counts remembered per user and room, extended by the events since. */
  readonly unreadMemory = new UnreadMemory();
  readonly #roomFacts = new FactsMemory<RoomPushFacts>();

  constructor(private readonly deps: SyncDeps) {}

  async sync(req: SyncRequest): Promise<JsonObject> {
    const { storage, notifier } = this.deps;
    let since: number | null = null;
    let typingSince: number | null = null;
    if (req.since !== undefined) {
      const parsed = parseStreamToken(req.since, 'since');
      // A sync token is never negative (only room pagination tokens into backfilled history are): refuse one as
      // malformed rather than guess what the client meant.
      if (parsed.pos < 0) throw new MatrixError('M_INVALID_PARAM', 'Invalid since token');
      // A token from the future (another database, a restore) is treated as "now": never a 500.
      since = Math.min(parsed.pos, storage.stream.current);
      const t = parsed.extra[0];
      // Typing serials restart with the process: an unknown one means "send the current typing state".
      typingSince = t !== undefined && t <= this.deps.typing.serial ? t : null;
    }
    const deadline = Date.now() + req.timeoutMs;
    for (;;) {
      const remaining = deadline - Date.now();
      // The position first, then the memberships (they may be newer, never older), then watch the user's rooms
      // before computing, so a commit during the computation still wakes us.
      const to = storage.stream.current;
      const memberships = await membershipsOf(storage.db, req.userId);
      const rooms = since === null ? [] : activeRoomIds(memberships);
      const waiter = notifier.register(req.userId, rooms, since === null ? 0 : Math.max(0, remaining));
      try {
        // A commit between reading the position and registering woke nobody here: never wait on it.
        const raced = storage.stream.current > to;
        // Nothing committed after `since` and no typing change: the answer is empty, so wait without computing it
        // (a long-poll re-issued right after its answer, the usual case). To-device messages left over from a
        // response cut short are marked in the token, and computed.
        if (!raced && this.#nothingNew(req, since, typingSince, to, rooms) && remaining > 0) {
          const woken = await waiter.woken;
          if (!woken) return (await this.compute(req, since, typingSince, storage.stream.current)).body;
          continue;
        }
        const result = await this.compute(req, since, typingSince, to, memberships);
        if (!result.empty || since === null || remaining <= 0) return result.body;
        if (raced) continue;
        const woken = await waiter.woken;
        if (!woken) return (await this.compute(req, since, typingSince, storage.stream.current)).body;
      } finally {
        waiter.cancel();
      }
    }
  }

  async compute(
    req: SyncRequest,
    since: number | null,
    typingSince: number | null,
    to: number,
    /** The user's memberships, read after `to` was taken (read here when absent). */
    known?: MembershipRow[],
  ): Promise<Computed> {
    const { storage, reader, typing } = this.deps;
    const typingSerial = typing.serial;
    const ctx: SyncContext = {
      storage,
      reader,
      userId: req.userId,
      deviceId: req.deviceId,
      filter: req.filter,
      since,
      to,
      fullState: req.fullState,
      useStateAfter: req.useStateAfter,
    };
    const memberships = (known ?? (await membershipsOf(storage.db, req.userId))).filter((m) =>
      roomAllowed(req.filter, m.room_id),
    );
    const join: JsonObject = {};
    const invite: JsonObject = {};
    const knock: JsonObject = {};
    const leave: JsonObject = {};
    // An incremental sync first asks, in one statement, which per-user streams have anything new.
    const activity =
      since === null ? ALL_ACTIVE : await streamActivity(storage.db, req.userId, req.deviceId, since, to);
    const accountData = activity.accountData
      ? await this.#accountData(ctx)
      : { global: [], rooms: new Map<string, JsonObject[]>() };
    const joinedRooms = new Map(
      memberships.filter((m) => m.membership === 'join').map((m) => [m.room_nid, m.room_id]),
    );
    const receipts = activity.receipts
      ? await receiptEventsForRooms(storage.db, joinedRooms, req.userId, since, to)
      : new Map<string, never>();
    const typingChanged = new Set(typingSince === null ? [] : typing.roomsChangedSince(typingSince));
    const ephemeralFilter = req.filter.room?.ephemeral;
    const ephemeralOf = (roomId: string): JsonObject[] => {
      const out: JsonObject[] = [];
      if (typingSince === null ? typing.typingIn(roomId).length > 0 : typingChanged.has(roomId)) {
        out.push(typingEvent(typing, roomId) as unknown as JsonObject);
      }
      const r = receipts.get(roomId);
      if (r) out.push(r as unknown as JsonObject);
      return out.filter((e) => eventAllowed(ephemeralFilter, e.type as string, ''));
    };
    const visible = (events: LoadedEvent[]) =>
      this.deps.visible ? this.deps.visible(req.userId, events) : Promise.resolve(events);
    // Events after the user's current join were all sent while they were joined: visible under every history
    // setting, so only older events need the full check (an initial sync mostly skips it).
    const visibleWhileJoined =
      (m: MembershipRow) =>
      async (events: LoadedEvent[]): Promise<LoadedEvent[]> => {
        const sinceJoin = (e: LoadedEvent) =>
          e.stateSnapshotNid !== null && (e.streamOrdering ?? 0) > m.stream_ordering;
        const older = events.filter((e) => !sinceJoin(e));
        if (older.length === 0) return events;
        const ok = new Set((await visible(older)).map((e) => e.nid));
        return events.filter((e) => sinceJoin(e) || ok.has(e.nid));
      };
    // An incremental sync touches only rooms where something happened: one query finds them.
    const active =
      since === null || req.fullState ? undefined : await this.#roomsWithEvents(joinedRooms, since, to);

    // Unread counts are computed for all the rooms of the response at once, after the loop.
    const unread = new Map<number, { joinedAt: number; roomId: string; counts: UnreadCounts }>();
    const unreadPlaceholder = (m: MembershipRow): UnreadCounts => {
      const counts = { notification_count: 0, highlight_count: 0 };
      unread.set(m.room_nid, { joinedAt: m.stream_ordering, roomId: m.room_id, counts });
      return counts;
    };

    // An initial (or full-state) sync reads every joined room's timeline: a few statements read them all.
    if (since === null || req.fullState)
      ctx.prefetched = await prefetchTimelines(
        ctx,
        memberships.filter((m) => m.membership === 'join'),
        to,
      );

    // Rooms whose timeline may start before `since` (newly joined, full state).
    const fullRooms = new Set<string>();
    for (const m of memberships) {
      const changed = since === null || m.stream_ordering > since;
      if (m.membership === 'join') {
        const full = since === null || req.fullState || m.stream_ordering > since;
        if (full) fullRooms.add(m.room_id);
        const roomData = accountData.rooms.get(m.room_id);
        const ephemeral = ephemeralOf(m.room_id);
        if (!full && active && !active.has(m.room_nid) && !roomData && ephemeral.length === 0) continue;
        const section =
          (await this.shared.section(ctx, m, to)) ??
          (await roomTimelineSection(ctx, m, to, full, visibleWhileJoined(m)));
        if (section.empty && !roomData && ephemeral.length === 0) continue;
        const { empty: _empty, ...rest } = section;
        join[m.room_id] = {
          ...rest,
          ephemeral: { events: ephemeral },
          account_data: { events: roomData ?? [] },
          unread_notifications: unreadPlaceholder(m),
          unread_thread_notifications: {},
        };
      } else if (m.membership === 'invite' && changed) {
        invite[m.room_id] = { invite_state: { events: await this.#stripped(m) } };
      } else if (m.membership === 'knock' && changed) {
        knock[m.room_id] = { knock_state: { events: await this.#stripped(m) } };
      } else if ((m.membership === 'leave' || m.membership === 'ban') && m.forgotten === 0) {
        const wanted = since === null ? req.filter.room?.include_leave === true : m.stream_ordering > since;
        if (!wanted) continue;
        // A leave sent over federation from a room this server is not in (a rejected invite, a rescinded knock) is
        // an outlier outside any timeline: it is the room's whole timeline.
        const own = (await reader.byNids([m.event_nid])).get(m.event_nid);
        if (own && own.stateSnapshotNid === null) {
          const fmt = { format: req.filter.event_format ?? 'client', eventFields: req.filter.event_fields };
          const events = await formatEvents({ storage, reader }, [own], { ...fmt, omitRoomId: true });
          const timeline = { events, limited: false, prev_batch: formatStreamToken(m.stream_ordering) };
          const state = { events: [] };
          leave[m.room_id] = {
            timeline,
            ...(req.useStateAfter ? { state_after: state } : { state }),
            account_data: { events: accountData.rooms.get(m.room_id) ?? [] },
          };
          continue;
        }
        // The user always sees their own leave: history visibility would hide a rejected invite's.
        const withOwnLeave = async (events: LoadedEvent[]) => {
          const seen = new Set((await visible(events)).map((e) => e.nid));
          return events.filter((e) => seen.has(e.nid) || e.nid === m.event_nid);
        };
        const section = await roomTimelineSection(
          ctx,
          m,
          Math.min(m.stream_ordering, to),
          since === null,
          withOwnLeave,
        );
        const { empty: _empty, summary: _summary, ...rest } = section;
        leave[m.room_id] = { ...rest, account_data: { events: accountData.rooms.get(m.room_id) ?? [] } };
      }
    }

    if (unread.size) {
      const counts = await unreadCountsForRooms(
        {
          db: storage.db,
          reader,
          rules: () => loadPushRules(storage, req.userId),
          ignored: async () => (await syncExclusions(storage.db, req.userId)).ignored,
          memory: this.unreadMemory,
          facts: this.#roomFacts,
          changes: this.deps.roomChanges,
        },
        req.userId,
        [...unread].map(([roomNid, u]) => ({ roomNid, joinedAt: u.joinedAt, roomId: u.roomId })),
        to,
      );
      for (const [roomNid, u] of unread) Object.assign(u.counts, counts.get(roomNid));
    }
    await excludeFromSync(storage.db, req.userId, { join, invite, leave }, since !== null);
    await this.#aggregate(req, since, fullRooms, [join, leave]);
    const rooms: JsonObject = {};
    if (Object.keys(join).length) rooms.join = join;
    if (Object.keys(invite).length) rooms.invite = invite;
    if (Object.keys(knock).length) rooms.knock = knock;
    if (Object.keys(leave).length) rooms.leave = leave;
    const presence = activity.presence ? await this.#presence(ctx, [...joinedRooms.keys()]) : [];
    const e2ee = await e2eeSync(ctx, req.since, {
      toDevice: activity.toDevice,
      deviceLists: activity.deviceLists || this.#membershipsChanged(memberships, joinedRooms, since),
    });
    const body: JsonObject = {
      next_batch: formatStreamToken(to, [typingSerial, ...e2ee.tokenExtra]),
      rooms,
      account_data: { events: accountData.global },
      presence: { events: presence },
      to_device: e2ee.to_device,
      device_lists: e2ee.device_lists,
      device_one_time_keys_count: e2ee.device_one_time_keys_count,
      device_unused_fallback_key_types: e2ee.device_unused_fallback_key_types,
    };
    const empty =
      Object.keys(rooms).length === 0 &&
      accountData.global.length === 0 &&
      presence.length === 0 &&
      e2ee.empty;
    return { body, empty };
  }

  #nothingNew(
    req: SyncRequest,
    since: number | null,
    typingSince: number | null,
    to: number,
    rooms: readonly string[],
  ): boolean {
    if (since === null || since < to || typingSince === null || req.since === undefined) return false;
    if (parseStreamToken(req.since, 'since').extra.length > 1) return false;
    const changed = this.deps.typing.roomsChangedSince(typingSince);
    if (changed.length === 0) return true;
    const mine = new Set(rooms);
    return !changed.some((r) => mine.has(r));
  }

  /** The joined rooms (by nid) with an event in (since, to]: from the change cache when it covers `since`. */
  async #roomsWithEvents(
    joined: ReadonlyMap<number, string>,
    since: number,
    to: number,
  ): Promise<Set<number>> {
    const cached = this.deps.roomChanges?.maybeChangedSince(joined.values(), since);
    if (!cached) return roomsWithEvents(this.deps.storage.db, [...joined.keys()], since, to);
    const out = new Set<number>();
    for (const [nid, id] of joined) if (cached.has(id)) out.add(nid);
    return out;
  }

  /**
   * Whether a membership changed since `since` in a room the user is in, or the user's own: device-list changes
   * follow them. True (ask the database) when the change cache does not cover `since`.
   */
  #membershipsChanged(
    memberships: readonly MembershipRow[],
    joined: ReadonlyMap<number, string>,
    since: number | null,
  ): boolean {
    if (since === null) return true;
    if (memberships.some((m) => m.stream_ordering > since)) return true;
    const cached = this.deps.roomChanges?.maybeChangedSince(joined.values(), since, true);
    return cached === undefined || cached.size > 0;
  }

  /** Adds bundled aggregations to every timeline of the response in one pass (client format only). */
  async #aggregate(
    req: SyncRequest,
    since: number | null,
    fullRooms: ReadonlySet<string>,
    sections: JsonObject[],
  ): Promise<void> {
    if ((req.filter.event_format ?? 'client') !== 'client' || req.filter.event_fields) return;
    const events: ClientEvent[] = [];
    for (const section of sections) {
      for (const [roomId, room] of Object.entries(section)) {
        const timeline = (room as { timeline?: { events: unknown[] } }).timeline;
        // Only an event committed after a timeline event can relate to it: in an incremental sync the timeline is
        // after `since`, so a room without a relation since then has nothing to bundle.
        const changes = this.deps.roomChanges;
        if (
          since !== null &&
          !fullRooms.has(roomId) &&
          changes &&
          !changes.mayHave('relation', roomId, since)
        )
          continue;
        if (timeline) events.push(...(timeline.events as ClientEvent[]));
      }
    }
    const { storage, reader } = this.deps;
    await bundleAggregations({ storage, reader }, events, { userId: req.userId, deviceId: req.deviceId });
  }

  /** Presence of the user and of everyone sharing a joined room with them. */
  async #presence(ctx: SyncContext, joinedRoomNids: number[]): Promise<JsonObject[]> {
    if (!this.deps.presenceEnabled) return [];
    const db = ctx.storage.db;
    // Incremental: find who changed first (usually nobody), then keep those sharing a room.
    let candidates: string[] | undefined;
    if (ctx.since !== null) {
      const changed = await db
        .selectFrom('presence')
        .select('user_id')
        .where('stream_pos', '>', ctx.since)
        .where('stream_pos', '<=', ctx.to)
        .execute();
      if (changed.length === 0) return [];
      candidates = changed.map((r) => r.user_id);
    }
    const users = new Set<string>([ctx.userId]);
    for (let i = 0; i < joinedRoomNids.length; i += 500) {
      let q = db
        .selectFrom('room_members')
        .select('user_id')
        .distinct()
        .where('room_nid', 'in', joinedRoomNids.slice(i, i + 500))
        .where('membership', '=', 'join');
      if (candidates) q = q.where('user_id', 'in', candidates);
      for (const r of await q.execute()) users.add(r.user_id);
    }
    const events = await presenceEventsFor(db, users, ctx.since, ctx.to);
    return events
      .filter((e) => eventAllowed(ctx.filter.presence, e.type, e.sender))
      .map((e) => e as unknown as JsonObject);
  }

  async #stripped(m: MembershipRow): Promise<JsonObject[]> {
    const { reader } = this.deps;
    const ev = (await reader.byNids([m.event_nid])).get(m.event_nid);
    if (!ev) return [];
    // An invite (knock) over federation to a room this server is not in: the resident server's stripped state.
    const given = ev.pdu.unsigned?.invite_room_state ?? ev.pdu.unsigned?.knock_room_state;
    if (ev.stateSnapshotNid === null && Array.isArray(given)) {
      const objects = given.filter(
        (e): e is JsonObject => typeof e === 'object' && e !== null && !Array.isArray(e),
      );
      return [...objects, strippedState(ev)];
    }
    const before = await stateBefore(reader, ev);
    const wanted = new Map<string, number>();
    for (const [k, nid] of before) {
      const type = k.slice(0, k.indexOf('\u0000'));
      if (STRIPPED_TYPES.has(type) || (type === 'm.room.member' && k.endsWith(`\u0000${ev.pdu.sender}`)))
        wanted.set(k, nid);
    }
    const state = await reader.stateEvents(wanted, m.room_id);
    return [...[...state.values()].map(strippedState), strippedState(ev)];
  }

  async #accountData(ctx: SyncContext): Promise<{ global: JsonObject[]; rooms: Map<string, JsonObject[]> }> {
    const rows = await listAccountDataSince(ctx.storage.db, ctx.userId, ctx.since ?? -1, ctx.to);
    const global: JsonObject[] = [];
    const rooms = new Map<string, JsonObject[]>();
    let sawPushRules = false;
    for (const r of rows) {
      let content: unknown;
      try {
        content = JSON.parse(r.content);
      } catch {
        continue;
      }
      const ev = { type: r.type, content } as JsonObject;
      if (r.room_id === '') {
        if (!eventAllowed(ctx.filter.account_data, r.type, ctx.userId)) continue;
        if (r.type === PUSH_RULES_TYPE) {
          sawPushRules = true;
          ev.content = { global: await loadPushRules(ctx.storage, ctx.userId) };
        }
        global.push(ev);
      } else {
        if (!eventAllowed(ctx.filter.room?.account_data, r.type, ctx.userId)) continue;
        const list = rooms.get(r.room_id) ?? [];
        list.push(ev);
        rooms.set(r.room_id, list);
      }
    }
    if (
      ctx.since === null &&
      !sawPushRules &&
      eventAllowed(ctx.filter.account_data, PUSH_RULES_TYPE, ctx.userId)
    ) {
      global.push({
        type: PUSH_RULES_TYPE,
        content: { global: await loadPushRules(ctx.storage, ctx.userId) },
      });
    }
    return { global, rooms };
  }
}
