/**
 * unread_notifications: the user's push rules evaluated over the events from others after their latest read
 * receipt (m.read or m.read.private, unthreaded or on the main timeline), or after their join when they have none.
 * An event counts when its actions notify, and highlights when they set the highlight tweak. At most the latest
 * {@link UNREAD_SCAN_LIMIT} such events are evaluated, so a long-unread room costs the same as a busy one.
 * Room facts (member count, display name, power levels) are taken from the current state, as Synapse's counts
 * would be for events sent now. Many rooms are counted together: receipts and room facts take a few queries in
 * all, the events one statement per 100 rooms. With an {@link UnreadMemory}, a room counted before is counted on
 * from where that count ended (see unread-memory.ts). A redacted event does not count, nor a non-state event of a
 * user the reader ignores (`m.ignored_user_list`).
 */
import type { Kysely } from 'kysely';
import type { PushRuleset } from '../push/default-rules.js';
import { evaluateForUser, loadRoomsPushFacts, type RoomPushFacts } from '../push/room-push.js';
import type { EventReader, LoadedEvent } from '../read/event-reader.js';
import type { RoomChangeCache } from './change-cache.js';
import {
  extendWindow,
  HIGHLIGHT,
  NOTIFY,
  windowCounts,
  type FactsMemory,
  type UnreadMemory,
  type UnreadWindow,
} from './unread-memory.js';
import type { Database } from '../storage/schema.js';
import { WatchedMemo } from '../storage/watched-memo.js';
import { unreadCandidates } from './unread-candidates.js';

export const UNREAD_SCAN_LIMIT = 200;
const CHUNK = 500;

export interface UnreadDeps {
  db: Kysely<Database>;
  reader: EventReader;
  /** The user's push rules; called at most once per computation, when some room has events to evaluate or outcomes to reuse. */
  rules: () => Promise<PushRuleset>;
  /** The users whose events do not count (`m.ignored_user_list`); loaded with the rules. */
  ignored?: () => Promise<ReadonlySet<string>>;
  /** Remembered windows to extend (with `changes`, which tells of redactions since): counts the new events only. */
  memory?: UnreadMemory;
  /** Remembered room facts (with `changes`, which tells of state events since). */
  facts?: FactsMemory<RoomPushFacts>;
  changes?: RoomChangeCache;
}

export interface UnreadCounts {
  notification_count: number;
  highlight_count: number;
}

export interface UnreadRoom {
  roomNid: number;
  /** The stream position of the user's current join. */
  joinedAt: number;
  /** The room id: a remembered window is used only when given. */
  roomId?: string;
}

/** The counts of one room. */
export async function unreadCounts(
  deps: UnreadDeps,
  roomNid: number,
  userId: string,
  joinedAt: number,
  upTo: number,
): Promise<UnreadCounts> {
  const all = await unreadCountsForRooms(deps, userId, [{ roomNid, joinedAt }], upTo);
  return all.get(roomNid) ?? { notification_count: 0, highlight_count: 0 };
}

/** The counts of many rooms, by room nid. */
export async function unreadCountsForRooms(
  deps: UnreadDeps,
  userId: string,
  rooms: readonly UnreadRoom[],
  upTo: number,
): Promise<Map<number, UnreadCounts>> {
  const { db, reader } = deps;
  const out = new Map<number, UnreadCounts>();
  for (const r of rooms) out.set(r.roomNid, { notification_count: 0, highlight_count: 0 });
  const from = new Map(rooms.map((r) => [r.roomNid, r.joinedAt]));
  const nids = rooms.map((r) => r.roomNid);
  for (let i = 0; i < nids.length; i += CHUNK) {
    for (const [nid, pos] of await receiptPositions(db, userId, nids.slice(i, i + CHUNK))) {
      from.set(nid, Math.max(from.get(nid) ?? 0, pos));
    }
  }
  // Each room's window: a remembered one extended from where it ends, or a fresh one from the receipt. A window
  // with outcomes was evaluated under the push rules and ignored users it names: a change counts afresh.
  let rules: PushRuleset | undefined;
  let ignored: ReadonlySet<string> = new Set();
  let rulesKey = '';
  const loadRules = async (): Promise<PushRuleset> => {
    if (!rules) {
      const [loaded, ignoring] = await Promise.all([deps.rules(), deps.ignored?.() ?? ignored]);
      rules = loaded;
      ignored = ignoring;
      rulesKey = JSON.stringify(rules) + (ignored.size ? `\u0000${[...ignored].sort().join('\u0000')}` : '');
    }
    return rules;
  };
  const known = new Map<number, UnreadWindow>();
  for (const r of rooms) {
    const w =
      deps.memory && deps.changes && r.roomId !== undefined
        ? deps.memory.usable(userId, r.roomNid, from.get(r.roomNid) ?? 0, upTo)
        : undefined;
    if (w && !deps.changes?.mayHave('redaction', r.roomId ?? '', w.upTo)) known.set(r.roomNid, w);
  }
  if ([...known.values()].some((w) => w.positions.length > 0)) await loadRules();
  const windows = new Map<number, UnreadWindow>();
  for (const r of rooms) {
    const w = known.get(r.roomNid);
    const f = from.get(r.roomNid) ?? 0;
    const fresh = !w || (w.positions.length > 0 && w.rules !== rulesKey);
    windows.set(r.roomNid, fresh ? { from: f, upTo: f, positions: [], flags: [], rules: '' } : w);
  }
  const pending = rooms.filter((r) => (windows.get(r.roomNid)?.upTo ?? upTo) < upTo);
  const candidates = await unreadCandidates(
    db,
    deps.changes,
    userId,
    pending.map((r) => ({
      roomNid: r.roomNid,
      ...(r.roomId !== undefined ? { roomId: r.roomId } : {}),
      after: windows.get(r.roomNid)?.upTo ?? 0,
    })),
    upTo,
    UNREAD_SCAN_LIMIT,
  );
  const roomIds = new Map(rooms.map((r) => [r.roomNid, r.roomId]));
  const withEvents = [...candidates].filter(([, c]) => c.nids.length > 0).map(([nid]) => nid);
  const [events, , facts] = withEvents.length
    ? await Promise.all([
        reader.byNids(withEvents.flatMap((nid) => candidates.get(nid)?.nids ?? [])),
        loadRules(),
        roomFacts(deps, userId, withEvents, roomIds, upTo),
      ])
    : [new Map<number, LoadedEvent>(), undefined, new Map<number, RoomPushFacts>()];
  for (const [roomNid, c] of candidates) {
    const roomFacts = facts.get(roomNid);
    const flags = c.nids.map((nid) => {
      const ev = events.get(nid);
      // A redacted event no longer counts (as Synapse drops its push actions); a missing one is skipped.
      if (!ev || ev.redactedBy !== null || !roomFacts || !rules) return 0;
      if (ignored.has(ev.pdu.sender) && ev.pdu.state_key === undefined) return 0;
      const outcome = evaluateForUser(ev, userId, rules, roomFacts);
      return (outcome?.notify ? NOTIFY : 0) | (outcome?.highlight ? HIGHLIGHT : 0);
    });
    const w = windows.get(roomNid);
    if (w) windows.set(roomNid, extendWindow(w, upTo, c.positions, flags, UNREAD_SCAN_LIMIT, rulesKey));
  }
  for (const r of rooms) {
    const w = windows.get(r.roomNid);
    if (!w) continue;
    const settled = w.upTo < upTo ? { ...w, upTo } : w;
    if (deps.memory && r.roomId !== undefined) deps.memory.remember(userId, r.roomNid, settled);
    out.set(r.roomNid, windowCounts(settled));
  }
  return out;
}

/**
 * The stream position of the newest event each room's unthreaded or main-thread read receipt (public or private)
 * names, for the rooms that have one; asked on every woken /sync, so remembered until any receipt write.
 */
const receiptMemo = new WatchedMemo<Map<number, number>>('unread_receipts', ['receipts'], (v) => new Map(v));

function receiptPositions(
  db: Kysely<Database>,
  userId: string,
  nids: readonly number[],
): Promise<Map<number, number>> {
  return receiptMemo.get(db, `${userId}\u0000${nids.join(',')}`, async () => {
    const rows = await db
      .selectFrom('receipts as r')
      .innerJoin('events as e', 'e.event_id', 'r.event_id')
      .select(['r.room_nid', (eb) => eb.fn.max('e.stream_ordering').as('pos')])
      .where('r.room_nid', 'in', nids)
      .where('r.user_id', '=', userId)
      .where('r.receipt_type', 'in', ['m.read', 'm.read.private'])
      .where('r.thread_id', 'in', ['', 'main'])
      .groupBy('r.room_nid')
      .execute();
    return new Map(rows.map((r) => [Number(r.room_nid), Number(r.pos ?? 0)]));
  });
}

/** The push facts of `roomNids`: remembered ones while no state event came since, the others in one load. */
async function roomFacts(
  deps: UnreadDeps,
  userId: string,
  roomNids: readonly number[],
  roomIds: ReadonlyMap<number, string | undefined>,
  upTo: number,
): Promise<Map<number, RoomPushFacts>> {
  const { facts: memo, changes } = deps;
  const out = new Map<number, RoomPushFacts>();
  const missing: number[] = [];
  for (const nid of roomNids) {
    const roomId = roomIds.get(nid);
    const known =
      memo && changes && roomId !== undefined
        ? memo.get(userId, nid, (pos) => !changes.mayHave('state', roomId, pos))
        : undefined;
    if (known) out.set(nid, known);
    else missing.push(nid);
  }
  if (missing.length === 0) return out;
  const loaded = await loadRoomsPushFacts(deps.db, deps.reader, missing, [userId]);
  for (const [nid, f] of loaded) {
    out.set(nid, f);
    if (memo && roomIds.get(nid) !== undefined) memo.set(userId, nid, upTo, f);
  }
  return out;
}
