/**
 * Per-room reads of a sliding sync computation, batched: the rooms of a response are built concurrently, and the
 * lookups they make in the same turn of the event loop become one statement (timelines, member lists, transaction
 * ids), so the statements of a response do not grow with the number of rooms in its windows.
 */
import type { Kysely } from 'kysely';
import { txnIdsFor } from '../../read/room-queries.js';
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

export class RoomBatch {
  readonly #timelines: Batcher<number, TimelineRows>;
  readonly #members: Batcher<number, RoomMembers>;
  readonly #txnIds: Batcher<number, string | null>;
  readonly #queries = new Map<number, TimelineQuery>();

  constructor(db: Kysely<Database>, userId: string, deviceId: string) {
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

  /** The room's timeline events in (after, upTo], the latest `limit` (one query per room and computation). */
  timeline(q: TimelineQuery): Promise<TimelineRows> {
    this.#queries.set(q.roomNid, q);
    return this.#timelines.get(q.roomNid);
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
