/**
 * Per-room reads of a sliding sync computation, batched: the rooms of a response are built concurrently, and the
 * lookups they make in the same turn of the event loop become one statement (timelines, member lists, transaction
 * ids), so the statements of a response do not grow with the number of rooms in its windows. Timelines are also
 * shared between computations (`SharedTimelines`): the connections a message wakes ask for the same room's events
 * after the same position, and the rows of a committed range never change, so the first one's read serves them all.
 */
import type { Kysely } from 'kysely';
import { txnIdsFor } from '../../read/room-queries.js';
import { LruCache } from '../../cache/lru.js';
import type { RoomChangeCache } from '../change-cache.js';
import type { EventReader, LoadedEvent } from '../../read/event-reader.js';
import type { Database } from '../../storage/schema.js';
import {
  membersOfRooms,
  timelinesOf,
  type RoomMembers,
  type TimelineQuery,
  type TimelineRows,
} from '../../storage/sliding-sync.js';

/** Collects keys asked for in one turn of the event loop and resolves them all from one bulk load. */
class Batcher<K, V> {
  #pending = new Map<K, { resolve: (v: V) => void; reject: (e: unknown) => void }[]>();
  #scheduled = false;

  constructor(private readonly load: (keys: K[]) => Promise<Map<K, V>>) {}

  get(key: K): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      const waiting = this.#pending.get(key) ?? [];
      waiting.push({ resolve, reject });
      this.#pending.set(key, waiting);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const batch = this.#pending;
    this.#pending = new Map();
    this.#scheduled = false;
    this.load([...batch.keys()]).then(
      (values) => {
        for (const [key, waiting] of batch) {
          const v = values.get(key);
          for (const w of waiting)
            if (v === undefined) w.reject(new Error('batched load returned no value'));
            else w.resolve(v);
        }
      },
      (err: unknown) => {
        for (const waiting of batch.values()) for (const w of waiting) w.reject(err);
      },
    );
  }
}

/** A room's timeline rows and their events as the reader loaded them (a damaged one left out). */
export interface LoadedTimeline {
  rows: TimelineRows;
  loaded: LoadedEvent[];
}

/**
 * Timelines by (room, after, upTo, limit) with their loaded events, kept for the computations that follow (bounded):
 * the connections one message wakes read the range once and load its events once. `upTo` is always a committed
 * position, so the rows of the range are final (a redaction changes the events, which the reader reloads: an entry
 * is only reused while no redaction came since, see `fresh`). A failed read is not kept.
 */
export class SharedTimelines {
  readonly #entries: LruCache<string, { at: Promise<LoadedTimeline>; roomId: string; upTo: number }>;

  constructor(capacity = 2_000) {
    this.#entries = new LruCache('sliding_timelines', capacity);
  }

  get(
    q: TimelineQuery,
    roomId: string,
    fresh: (roomId: string, since: number) => boolean,
    load: () => Promise<LoadedTimeline>,
  ): Promise<LoadedTimeline> {
    const key = `${q.roomNid}:${q.after ?? ''}:${q.upTo}:${q.limit}`;
    const known = this.#entries.get(key);
    if (known && fresh(roomId, known.upTo)) return known.at;
    const at = load();
    const entry = { at, roomId, upTo: q.upTo };
    this.#entries.set(key, entry);
    at.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    });
    return at;
  }
}

export class RoomBatch {
  readonly #timelines: Batcher<number, TimelineRows>;
  readonly #members: Batcher<number, RoomMembers>;
  readonly #txnIds: Batcher<number, string | null>;
  readonly #queries = new Map<number, TimelineQuery>();

  constructor(
    db: Kysely<Database>,
    userId: string,
    deviceId: string,
    private readonly shared?: SharedTimelines,
    private readonly changes?: RoomChangeCache,
  ) {
    this.#timelines = new Batcher((nids) =>
      timelinesOf(
        db,
        nids.map((n) => this.#queries.get(n) as TimelineQuery),
      ),
    );
    this.#members = new Batcher((nids) => membersOfRooms(db, nids));
    this.#txnIds = new Batcher(async (nids) => {
      const found = await txnIdsFor(db, userId, deviceId, nids);
      return new Map(nids.map((n) => [n, found.get(n) ?? null]));
    });
  }

  /**
   * The room's timeline events in (after, upTo], the latest `limit` (one query per room and computation, or none
   * when another computation read the same range), loaded by the reader.
   */
  timeline(q: TimelineQuery, roomId: string, reader: EventReader): Promise<LoadedTimeline> {
    const load = async (): Promise<LoadedTimeline> => {
      this.#queries.set(q.roomNid, q);
      const rows = await this.#timelines.get(q.roomNid);
      return { rows, loaded: await reader.listByNids(rows.nids) };
    };
    const shared = this.shared;
    if (!shared) return load();
    // Loaded events carry redacted_by: an entry is reused only while the room had no redaction since.
    const changes = this.changes;
    const fresh = (id: string, since: number) =>
      changes !== undefined && !changes.mayHave('redaction', id, since);
    return shared.get(q, roomId, fresh, load);
  }

  members(roomNid: number): Promise<RoomMembers> {
    return this.#members.get(roomNid);
  }

  /** Transaction ids of the requesting device's events among `nids` (only ask for the user's own events). */
  async txnIds(nids: readonly number[]): Promise<Map<number, string>> {
    const ids = await Promise.all(nids.map((n) => this.#txnIds.get(n)));
    const out = new Map<number, string>();
    nids.forEach((n, i) => {
      const id = ids[i];
      if (id !== null && id !== undefined) out.set(n, id);
    });
    return out;
  }
}
