/**
 * Remembered unread-count windows: for a (user, room), the outcome of every event from others that a count
 * evaluated, oldest first, with the window's bounds `from` (the read receipt or join) and `upTo` (the position
 * counted to). A later count of the same room extends the window with only the events after `upTo`, drops those at
 * or before a newer receipt, and keeps the latest UNREAD_SCAN_LIMIT: the same counts as a fresh evaluation, for
 * the cost of the new events. A long-poll woken by one message evaluates that message.
 *
 * Derived: filled from committed events, never asked whether anything exists. A window is not extended across a
 * redaction in its room (the redacted event must stop counting), nor under other push rules than its outcomes
 * were evaluated with: the caller counts afresh then. Bounded by the number of remembered outcomes.
 */
import { LruCache } from '../cache/lru.js';

/** Outcome flags of one evaluated event. */
export const NOTIFY = 1;
export const HIGHLIGHT = 2;

export interface UnreadWindow {
  from: number;
  upTo: number;
  /** Stream positions of the evaluated events, ascending. */
  positions: number[];
  /** NOTIFY | HIGHLIGHT per event of `positions`. */
  flags: number[];
  /** The push rules (as JSON) the outcomes were evaluated under; '' when there are none. */
  rules: string;
}

/** Remembered outcomes kept in all (about 16 bytes each). */
const MAX_OUTCOMES = 500_000;

export class UnreadMemory {
  readonly #windows = new LruCache<string, UnreadWindow>(
    'unread_windows',
    MAX_OUTCOMES,
    (w) => 1 + w.positions.length,
  );

  /**
   * The remembered window of the room that a count from `from` to `upTo` can extend: one whose `from` is not after
   * `from` and whose `upTo` is not after `upTo`, trimmed to events after `from` (and ending no earlier than `from`).
   * Undefined when there is none.
   */
  usable(userId: string, roomNid: number, from: number, upTo: number): UnreadWindow | undefined {
    const w = this.#windows.get(key(userId, roomNid));
    if (!w || w.from > from || w.upTo > upTo) return undefined;
    let drop = 0;
    while (drop < w.positions.length && (w.positions[drop] as number) <= from) drop++;
    // A receipt past the window's end leaves nothing of it: the count goes on from the receipt.
    const upToNow = Math.max(w.upTo, from);
    return { ...w, from, upTo: upToNow, positions: w.positions.slice(drop), flags: w.flags.slice(drop) };
  }

  remember(userId: string, roomNid: number, w: UnreadWindow): void {
    this.#windows.set(key(userId, roomNid), w);
  }
}

const key = (userId: string, roomNid: number): string => `${roomNid}\u0000${userId}`;

/** Appends outcomes (ascending positions) to a window, keeping the latest `limit`. */
export function extendWindow(
  w: UnreadWindow,
  upTo: number,
  positions: readonly number[],
  flags: readonly number[],
  limit: number,
  rules: string,
): UnreadWindow {
  const all = [...w.positions, ...positions];
  const allFlags = [...w.flags, ...flags];
  const cut = Math.max(0, all.length - limit);
  return {
    from: w.from,
    upTo,
    positions: all.slice(cut),
    flags: allFlags.slice(cut),
    rules: all.length ? rules : '',
  };
}

/** The counts a window stands for. */
export function windowCounts(w: UnreadWindow): { notification_count: number; highlight_count: number } {
  let notification_count = 0;
  let highlight_count = 0;
  for (const f of w.flags) {
    if (f & NOTIFY) notification_count++;
    if (f & HIGHLIGHT) highlight_count++;
  }
  return { notification_count, highlight_count };
}

/**
 * Room facts for push rules (member count, the user's display name, power levels) remembered per room and user with
 * the position they were read at; valid while the room has had no state event since (the change cache says so).
 */
export class FactsMemory<F> {
  readonly #facts = new LruCache<string, { pos: number; facts: F }>('unread_room_facts', 20_000);

  get(userId: string, roomNid: number, stillValid: (pos: number) => boolean): F | undefined {
    const k = key(userId, roomNid);
    const hit = this.#facts.get(k);
    if (!hit) return undefined;
    if (stillValid(hit.pos)) return hit.facts;
    this.#facts.delete(k);
    return undefined;
  }

  set(userId: string, roomNid: number, pos: number, facts: F): void {
    this.#facts.set(key(userId, roomNid), { pos, facts });
  }
}
