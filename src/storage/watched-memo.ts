/**
 * Reads remembered until a watched write (write-watch.ts) may have changed them: a hit needs the generations of
 * every watched kind to be those the value was read at, so any such write, committed or in flight, drops all of a
 * memo's entries at once. For small per-user reads asked on every request (a device's one-time key counts on every
 * /sync) whose tables change seldom. Only reads on the database itself are remembered, never reads inside a
 * transaction (they may see what is not committed); values are copied out so a caller cannot change the memo.
 * Bounded per database; never asked whether something exists.
 */
import { LruCache } from '../cache/lru.js';
import type { Executor } from './users.js';
import { writeGeneration, type WatchKind } from './write-watch.js';

interface Entry<T> {
  stamp: string;
  value: T;
}

export class WatchedMemo<T> {
  readonly #byDb = new WeakMap<object, LruCache<string, Entry<T>>>();

  constructor(
    readonly name: string,
    private readonly kinds: readonly WatchKind[],
    private readonly copy: (value: T) => T,
    /** The bound, in the weight `weigh` gives each value (1 by default). */
    private readonly maxWeight = 20_000,
    private readonly weigh: (value: T) => number = () => 1,
  ) {}

  #memo(db: Executor): LruCache<string, Entry<T>> {
    let memo = this.#byDb.get(db);
    if (!memo) {
      memo = new LruCache<string, Entry<T>>(this.name, this.maxWeight, (e) => this.weigh(e.value));
      this.#byDb.set(db, memo);
    }
    return memo;
  }

  #stamp(): string {
    return this.kinds.map(writeGeneration).join(':');
  }

  async get(db: Executor, key: string, load: () => Promise<T>): Promise<T> {
    if (db.isTransaction) return load();
    const memo = this.#memo(db);
    const stamp = this.#stamp();
    const hit = memo.get(key);
    if (hit && hit.stamp === stamp) return this.copy(hit.value);
    const value = await load();
    memo.set(key, { stamp, value: this.copy(value) });
    return value;
  }

  /**
   * Many keys at once: the ones not remembered are read by one `load` (which returns a value for each key it was
   * given; a key it leaves out is left out of the result and not remembered).
   */
  async getMany(
    db: Executor,
    keys: readonly string[],
    load: (missing: string[]) => Promise<Map<string, T>>,
  ): Promise<Map<string, T>> {
    const out = new Map<string, T>();
    if (db.isTransaction) return load([...keys]);
    const memo = this.#memo(db);
    const stamp = this.#stamp();
    const missing: string[] = [];
    for (const key of keys) {
      const hit = memo.get(key);
      if (hit && hit.stamp === stamp) out.set(key, this.copy(hit.value));
      else missing.push(key);
    }
    if (missing.length === 0) return out;
    for (const [key, value] of await load(missing)) {
      memo.set(key, { stamp, value: this.copy(value) });
      out.set(key, value);
    }
    return out;
  }
}
