/**
 * notification_count / highlight_count of the rooms of a sliding sync response: the same rule as /sync's
 * (src/sync/unread.ts: the user's push rules over the events from others after their latest read receipt, or after
 * their join, the latest UNREAD_SCAN_LIMIT at most), with the events of all rooms read in one statement instead of
 * one per room, and each room's counts remembered per user: a later response whose read receipt is unchanged
 * evaluates only the events since (a long-poll woken by one message evaluates that message). Non-state events of
 * users the reader ignores do not count; a remembered count made under another ignored list is counted afresh.
 */
import type { Kysely } from 'kysely';
import { LruCache } from '../../cache/lru.js';
import type { PushRuleset } from '../../push/default-rules.js';
import { evaluateForUser, loadRoomsPushFacts, type RoomPushFacts } from '../../push/room-push.js';
import type { EventReader } from '../../read/event-reader.js';
import type { Database } from '../../storage/schema.js';
import { readReceiptPositions } from '../../storage/sliding-sync.js';
import type { RoomChangeCache } from '../change-cache.js';
import { UNREAD_SCAN_LIMIT, type UnreadCounts } from '../unread.js';
import { unreadCandidates } from '../unread-candidates.js';

interface Remembered {
  from: number;
  upTo: number;
  /** Events evaluated so far (a fresh count evaluates at most UNREAD_SCAN_LIMIT). */
  scanned: number;
  counts: UnreadCounts;
  /** The ignored users the count left out (sorted, joined): another list counts afresh. */
  ignoredKey: string;
}

export interface SlidingUnreadDeps {
  db: Kysely<Database>;
  reader: EventReader;
  rules: () => Promise<PushRuleset>;
  /** Tells of redactions since a remembered count (absent: remembered counts are not extended). */
  changes?: RoomChangeCache;
  /** Users in the reader's `m.ignored_user_list`: their non-state events do not count (as /sync v2). */
  ignored?: ReadonlySet<string>;
}

export interface SlidingUnreadRoom {
  roomNid: number;
  roomId: string;
  /** Stream position of the user's join. */
  joinedAt: number;
}

export class SlidingUnread {
  readonly #memory: LruCache<string, Remembered>;
  readonly #pushFacts: LruCache<string, { facts: RoomPushFacts; at: number }>;

  constructor(capacity = 20_000) {
    this.#memory = new LruCache('sliding_unread', capacity);
    this.#pushFacts = new LruCache('sliding_push_facts', capacity);
  }

  async counts(
    deps: SlidingUnreadDeps,
    userId: string,
    rooms: readonly SlidingUnreadRoom[],
    upTo: number,
  ): Promise<Map<number, UnreadCounts>> {
    const receipts = await readReceiptPositions(
      deps.db,
      userId,
      rooms.map((r) => r.roomNid),
    );
    const ignored = deps.ignored ?? new Set<string>();
    const ignoredKey = [...ignored].sort().join('\u0000');
    const out = new Map<number, UnreadCounts>();
    const scan: {
      roomNid: number;
      roomId: string;
      from: number;
      base: Remembered | undefined;
      start: number;
    }[] = [];
    for (const r of rooms) {
      const from = Math.max(r.joinedAt, receipts.get(r.roomNid) ?? 0);
      const key = `${userId}\u0000${r.roomNid}`;
      const known = this.#memory.get(key);
      // A redaction since the remembered count may have removed an event it counted: count afresh.
      const redacted =
        known !== undefined && (deps.changes?.mayHave('redaction', r.roomId, known.upTo) ?? true);
      const usable =
        known && !redacted && known.from === from && known.upTo <= upTo && known.ignoredKey === ignoredKey
          ? known
          : undefined;
      if (usable && usable.upTo === upTo) out.set(r.roomNid, { ...usable.counts });
      else if (from >= upTo) {
        out.set(r.roomNid, { notification_count: 0, highlight_count: 0 });
      } else
        scan.push({ roomNid: r.roomNid, roomId: r.roomId, from, base: usable, start: usable?.upTo ?? from });
    }
    if (scan.length === 0) return out;
    // Each room from where its remembered count ends (or its own `from`): from the room change cache's latest
    // events where they cover it, one statement for all the others.
    const candidates = await unreadCandidates(
      deps.db,
      deps.changes,
      userId,
      scan.map((s) => ({ roomNid: s.roomNid, roomId: s.roomId, after: s.start })),
      upTo,
      UNREAD_SCAN_LIMIT,
    );
    const withEvents = [...candidates].filter(([, c]) => c.nids.length > 0).map(([nid]) => nid);
    const ids = new Map(rooms.map((r) => [r.roomNid, r.roomId]));
    const [events, rules, facts] = withEvents.length
      ? await Promise.all([
          deps.reader.byNids([...candidates.values()].flatMap((c) => c.nids)),
          deps.rules(),
          this.#facts(deps, userId, withEvents, ids, upTo),
        ])
      : [new Map(), undefined, new Map()];
    for (const s of scan) {
      const fresh = candidates.get(s.roomNid)?.nids ?? [];
      // Past the scan limit the remembered counts would cover more than a fresh count: count afresh.
      const base = s.base && s.base.scanned + fresh.length <= UNREAD_SCAN_LIMIT ? s.base : undefined;
      let list = fresh;
      if (!base && s.base) {
        list =
          (
            await unreadCandidates(
              deps.db,
              deps.changes,
              userId,
              [{ roomNid: s.roomNid, roomId: s.roomId, after: s.from }],
              upTo,
              UNREAD_SCAN_LIMIT,
            )
          ).get(s.roomNid)?.nids ?? [];
      }
      const counts: UnreadCounts = base ? { ...base.counts } : { notification_count: 0, highlight_count: 0 };
      const roomFacts = facts.get(s.roomNid);
      if (roomFacts && rules) {
        const missing = list.filter((n) => !events.has(n));
        const more = missing.length ? await deps.reader.byNids(missing) : new Map();
        for (const nid of list) {
          const ev = events.get(nid) ?? more.get(nid);
          // A redacted event no longer counts (as Synapse drops its push actions).
          if (!ev || ev.redactedBy !== null) continue;
          if (ev.pdu.state_key === undefined && ignored.has(ev.pdu.sender)) continue;
          const outcome = evaluateForUser(ev, userId, rules, roomFacts);
          if (outcome?.notify) counts.notification_count++;
          if (outcome?.highlight) counts.highlight_count++;
        }
      }
      this.#memory.set(`${userId}\u0000${s.roomNid}`, {
        from: s.from,
        upTo,
        scanned: (base?.scanned ?? 0) + list.length,
        counts: { ...counts },
        ignoredKey,
      });
      out.set(s.roomNid, counts);
    }
    return out;
  }

  /** Push facts of the rooms: remembered ones while the room had no state event since they were read. */
  async #facts(
    deps: SlidingUnreadDeps,
    userId: string,
    roomNids: readonly number[],
    ids: ReadonlyMap<number, string>,
    upTo: number,
  ): Promise<Map<number, RoomPushFacts>> {
    const out = new Map<number, RoomPushFacts>();
    const load: number[] = [];
    for (const nid of roomNids) {
      const known = this.#pushFacts.get(`${userId}\u0000${nid}`);
      const roomId = ids.get(nid);
      const fresh =
        known !== undefined &&
        roomId !== undefined &&
        deps.changes !== undefined &&
        !deps.changes.mayHave('state', roomId, known.at);
      if (fresh) out.set(nid, known.facts);
      else load.push(nid);
    }
    if (load.length) {
      const loaded = await loadRoomsPushFacts(deps.db, deps.reader, load, [userId]);
      for (const [nid, f] of loaded) {
        out.set(nid, f);
        // Read after upTo was committed: any state event after upTo makes the next request read them again.
        this.#pushFacts.set(`${userId}\u0000${nid}`, { facts: f, at: upTo });
      }
    }
    return out;
  }
}
