/**
 * A bounded LRU map weighed by size. Caches in Hearth hold only immutable facts read from committed data
 * (an event's JSON, a state snapshot), so they never need invalidating for correctness; they are bounded so that
 * memory stays flat, and they are never asked whether something exists.
 */
export class LruCache<K, V> {
  #map = new Map<K, { value: V; weight: number }>();
  #weight = 0;
  hits = 0;
  misses = 0;

  constructor(
    readonly name: string,
    readonly maxWeight: number,
    private readonly weigh: (value: V) => number = () => 1,
  ) {}

  get size(): number {
    return this.#map.size;
  }

  get weight(): number {
    return this.#weight;
  }

  get(key: K): V | undefined {
    const entry = this.#map.get(key);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.#map.delete(key);
    this.#map.set(key, entry);
    return entry.value;
  }

  set(key: K, value: V): void {
    const weight = Math.max(1, this.weigh(value));
    if (weight > this.maxWeight) return;
    this.delete(key);
    this.#map.set(key, { value, weight });
    this.#weight += weight;
    while (this.#weight > this.maxWeight) {
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
  }

  delete(key: K): void {
    const entry = this.#map.get(key);
    if (!entry) return;
    this.#map.delete(key);
    this.#weight -= entry.weight;
  }

  clear(): void {
    this.#map.clear();
    this.#weight = 0;
  }
}
