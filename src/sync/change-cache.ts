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
 *
 * It also keeps the latest few events of each recently active room (position, event nid, sender): the unread counts
 * of a long-poll woken by a message read that message's nid from here instead of querying for the events after the
 * remembered count (see recentFromOthers). Only positions the room's list is complete from are answered.
 */
import type { CandidateEvents } from '../storage/unread-candidates.js';

/** Entries kept before the cache forgets everything and starts over from the current position. */
const MAX_ENTRIES = 200_000;
/** Latest events kept per room, and rooms with kept events (beyond, all are dropped and the count starts over). */
const RECENT_PER_ROOM = 20;
const RECENT_ROOMS = 10_000;

/** A room's latest events, oldest first, complete for positions above `from`. */
interface Recent {
  from: number;
  positions: number[];
  nids: number[];
  senders: string[];
}

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
  #recent = new Map<string, Recent>();
  /** The position from which every room's latest events are kept (a room not in #recent had none since). */
  #recentFrom: number;
  #completeFrom: number;
  #highest: number;

  /** `start` is the stream position now: every later event will be recorded. */
  constructor(start: number) {
    this.#completeFrom = start;
    this.#recentFrom = start;
    this.#highest = start;
  }

  /** The position from which the cache knows every change (exclusive). */
  get completeFrom(): number {
    return this.#completeFrom;
  }

  /** Records that `roomId` got `event` (stored as `eventNid`) at `pos`, after the commit. */
  record(
    roomId: string,
    pos: number,
    event: { type: string; state_key?: unknown; content?: unknown; sender?: unknown },
    eventNid: number,
  ): void {
    if (pos > this.#highest) this.#highest = pos;
    this.#keep(roomId, pos, eventNid, typeof event.sender === 'string' ? event.sender : undefined);
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
   * The latest `limit` events of `roomId` from others than `userId` in (after, upTo], oldest first; `undefined` when
   * the cache does not know every event of the room after `after` (the caller queries).
   */
  recentFromOthers(
    roomId: string,
    after: number,
    upTo: number,
    userId: string,
    limit: number,
  ): CandidateEvents | undefined {
    const r = this.#recent.get(roomId);
    if (after < (r?.from ?? this.#recentFrom)) return undefined;
    const out: CandidateEvents = { nids: [], positions: [] };
    if (!r) return out;
    for (let i = r.positions.length - 1; i >= 0 && out.nids.length < limit; i--) {
      const pos = r.positions[i] as number;
      if (pos <= after) break;
      if (pos > upTo || r.senders[i] === userId) continue;
      out.nids.push(r.nids[i] as number);
      out.positions.push(pos);
    }
    out.nids.reverse();
    out.positions.reverse();
    return out;
  }

  /**
   * Forgets what the cache knows of `roomId` up to `pos` (after a repair changed the room's events outside the
   * writer): the room counts as changed at `pos` for every question, and its latest events are known only after it.
   */
  forgetRoom(roomId: string, pos: number): void {
    if (pos > this.#highest) this.#highest = pos;
    for (const map of [this.#last, this.#members, this.#state, this.#redactions, this.#relations]) {
      raise(map, roomId, pos);
    }
    const r = this.#recent.get(roomId);
    if (r) this.#forgetUpTo(r, pos);
    else
      this.#recent.set(roomId, {
        from: Math.max(this.#recentFrom, pos),
        positions: [],
        nids: [],
        senders: [],
      });
  }

  #forgetUpTo(r: Recent, pos: number): void {
    r.from = Math.max(r.from, pos);
    while (r.positions.length && (r.positions[0] as number) <= r.from) {
      r.positions.shift();
      r.nids.shift();
      r.senders.shift();
    }
  }

  /** Keeps the event among the room's latest (one without a sender makes the room unknown up to it). */
  #keep(roomId: string, pos: number, eventNid: number, sender: string | undefined): void {
    // Backfilled events (negative positions) come before everything kept; they are never asked for.
    if (pos < 0) return;
    let r = this.#recent.get(roomId);
    if (!r) {
      if (this.#recent.size >= RECENT_ROOMS) {
        this.#recent.clear();
        this.#recentFrom = this.#highest;
        // An event below the new bound would be outside what the cache claims to know.
        if (pos <= this.#recentFrom) return;
      }
      r = { from: this.#recentFrom, positions: [], nids: [], senders: [] };
      this.#recent.set(roomId, r);
    }
    if (sender === undefined) {
      this.#forgetUpTo(r, pos);
      return;
    }
    // Commits of one room come in position order; a late one is put in its place.
    let i = r.positions.length;
    while (i > 0 && (r.positions[i - 1] as number) > pos) i--;
    r.positions.splice(i, 0, pos);
    r.nids.splice(i, 0, eventNid);
    r.senders.splice(i, 0, sender);
    if (r.positions.length > RECENT_PER_ROOM) {
      // The room's list is complete only above the oldest event it drops.
      r.from = r.positions.shift() as number;
      r.nids.shift();
      r.senders.shift();
    }
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
