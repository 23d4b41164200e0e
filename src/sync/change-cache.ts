/**
 * A Synapse-style stream change cache for room events: room id → the last stream position an event of the room was
 * committed at, complete for every position above `completeFrom` (the stream position when the cache started, or
 * when it last dropped its entries to stay bounded). It is filled from the room writer's commit listeners, which run
 * synchronously right after the writer finishes its positions, so no reader can see a position as committed before
 * the cache knows of it.
 *
 * It is a derived cache: it only ever answers "nothing changed in this room since X" (letting a woken /sync skip
 * the query that finds the rooms with new events), never that something exists; a `since` older than what it covers
 * (a token from before a restart) gets `undefined`, and the caller queries.
 */

/** Entries kept before the cache forgets everything and starts over from the current position. */
const MAX_ENTRIES = 200_000;

export class RoomChangeCache {
  #last = new Map<string, number>();
  /** The same for membership events only (device-list changes follow them). */
  #members = new Map<string, number>();
  #completeFrom: number;
  #highest: number;

  /** `start` is the stream position now: every later event will be recorded. */
  constructor(start: number) {
    this.#completeFrom = start;
    this.#highest = start;
  }

  /** The position from which the cache knows every change (exclusive). */
  get completeFrom(): number {
    return this.#completeFrom;
  }

  /** Records that `roomId` got an event (a membership event when `member`) at `pos`, after the commit. */
  record(roomId: string, pos: number, member = false): void {
    if (pos > this.#highest) this.#highest = pos;
    if (!this.#last.has(roomId) && this.#last.size >= MAX_ENTRIES) {
      // Forget everything rather than track eviction order: later questions about older positions query.
      this.#last.clear();
      this.#members.clear();
      this.#completeFrom = this.#highest;
    }
    if ((this.#last.get(roomId) ?? -1) < pos) this.#last.set(roomId, pos);
    if (member && (this.#members.get(roomId) ?? -1) < pos) this.#members.set(roomId, pos);
  }

  /**
   * The rooms among `roomIds` that may have an event in (since, ∞); `undefined` when the cache does not cover
   * `since` (the caller must query).
   */
  maybeChangedSince(roomIds: Iterable<string>, since: number, membersOnly = false): Set<string> | undefined {
    if (since < this.#completeFrom) return undefined;
    const map = membersOnly ? this.#members : this.#last;
    const out = new Set<string>();
    for (const id of roomIds) {
      const pos = map.get(id);
      if (pos !== undefined && pos > since) out.add(id);
    }
    return out;
  }
}
