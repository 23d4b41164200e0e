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
  /** The same for state events (room facts push rules read: member count, names, power levels). */
  #state = new Map<string, number>();
  /** The same for redactions (remembered unread counts must drop a redacted event). */
  #redactions = new Map<string, number>();
  /** The same for events with an `m.relates_to` (bundled aggregations of earlier events change). */
  #relations = new Map<string, number>();
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

  /** Records that `roomId` got `event` at `pos`, after the commit. */
  record(roomId: string, pos: number, event: { type: string; state_key?: unknown; content?: unknown }): void {
    if (pos > this.#highest) this.#highest = pos;
    if (!this.#last.has(roomId) && this.#last.size >= MAX_ENTRIES) {
      // Forget everything rather than track eviction order: later questions about older positions query.
      this.#last.clear();
      this.#members.clear();
      this.#state.clear();
      this.#redactions.clear();
      this.#relations.clear();
      this.#completeFrom = this.#highest;
    }
    if ((this.#last.get(roomId) ?? -1) < pos) this.#last.set(roomId, pos);
    if (event.type === 'm.room.member') raise(this.#members, roomId, pos);
    if (typeof event.state_key === 'string') raise(this.#state, roomId, pos);
    if (event.type === 'm.room.redaction') raise(this.#redactions, roomId, pos);
    if (hasRelation(event.content)) raise(this.#relations, roomId, pos);
  }

  /**
   * Whether `roomId` may have had a state event (`kind` 'state'), a redaction ('redaction') or an event relating to
   * another ('relation') after `since`; true when the cache does not cover `since`.
   */
  mayHave(kind: 'state' | 'redaction' | 'relation', roomId: string, since: number): boolean {
    if (since < this.#completeFrom) return true;
    const map = kind === 'state' ? this.#state : kind === 'redaction' ? this.#redactions : this.#relations;
    const pos = map.get(roomId);
    return pos !== undefined && pos > since;
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

function hasRelation(content: unknown): boolean {
  if (typeof content !== 'object' || content === null) return false;
  const rel = (content as Record<string, unknown>)['m.relates_to'];
  return typeof rel === 'object' && rel !== null;
}

function raise(map: Map<string, number>, key: string, pos: number): void {
  if ((map.get(key) ?? -1) < pos) map.set(key, pos);
}
