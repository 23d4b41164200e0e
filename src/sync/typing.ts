/**
 * Typing notifications: in memory only, as in Synapse and Dendrite; nothing is persisted and a restart forgets who
 * is typing. Each change bumps `serial`, and /sync asks which rooms changed since the serial its token carries.
 *
 * Expiry uses one timer for the whole store, set for the earliest expiry. Extending a timeout does not move the
 * timer: when it fires early it finds nothing due and re-arms for the next expiry.
 */

/** Longest typing timeout a client may ask for (Synapse caps at 120 s). */
export const MAX_TYPING_TIMEOUT_MS = 120_000;
export const DEFAULT_TYPING_TIMEOUT_MS = 30_000;

export interface TypingStoreOptions {
  /** Called after every change to a room's typing list (set, stop, expiry). */
  onChange?: (roomId: string) => void;
  /** Clock, for tests. */
  now?: () => number;
}

/** Every set, renewal, stop and expiry of one user's typing (the federation sender relays local users' ones). */
export type TypingUpdateListener = (roomId: string, userId: string, typing: boolean) => void;

export class TypingStore {
  /** roomId → userId → expiry time (ms). Insertion order is the order users started typing. */
  #typing = new Map<string, Map<string, number>>();
  /** roomId → serial of its last change. Kept after the room empties, so a later sync sees the removal. */
  #changed = new Map<string, number>();
  #serial = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #closed = false;
  readonly #onChange: (roomId: string) => void;
  readonly #updates = new Set<TypingUpdateListener>();
  readonly #now: () => number;

  constructor(opts: TypingStoreOptions = {}) {
    this.#onChange = opts.onChange ?? (() => undefined);
    this.#now = opts.now ?? Date.now;
  }

  /** Bumped on every change; starts at 0 in each process. */
  get serial(): number {
    return this.#serial;
  }

  /**
   * Marks `userId` as typing in `roomId` for `timeoutMs` (capped at 120 s; default 30 s), or as not typing.
   * Renewing a user who is already typing only extends the timeout: nobody needs waking for that.
   */
  set(roomId: string, userId: string, typing: boolean, timeoutMs: number = DEFAULT_TYPING_TIMEOUT_MS): void {
    const room = this.#typing.get(roomId);
    if (!typing) {
      if (!room?.delete(userId)) return;
      if (room.size === 0) this.#typing.delete(roomId);
      this.#bump(roomId);
      this.#update(roomId, userId, false);
      return;
    }
    const timeout = Math.min(Math.max(0, Number.isFinite(timeoutMs) ? timeoutMs : 0), MAX_TYPING_TIMEOUT_MS);
    const expiry = this.#now() + timeout;
    const users = room ?? new Map<string, number>();
    if (!room) this.#typing.set(roomId, users);
    const wasTyping = users.has(userId);
    users.set(userId, expiry);
    if (!wasTyping) this.#bump(roomId);
    this.#schedule(expiry);
    this.#update(roomId, userId, true);
  }

  /** Adds a listener of per-user updates; returns its removal. */
  subscribe(listener: TypingUpdateListener): () => void {
    this.#updates.add(listener);
    return () => this.#updates.delete(listener);
  }

  /** Users typing in the room now, in the order they started. */
  typingIn(roomId: string): string[] {
    return [...(this.#typing.get(roomId)?.keys() ?? [])];
  }

  /**
   * Rooms whose typing list changed after `serial`. A serial above the current one comes from a token of an
   * earlier process: every room this process knows of is reported, so clients replace stale lists.
   */
  roomsChangedSince(serial: number): string[] {
    const all = serial > this.#serial;
    const out: string[] = [];
    for (const [roomId, s] of this.#changed) if (all || s > serial) out.push(roomId);
    return out;
  }

  /** O(1) form of `roomsChangedSince` for one room (a sync that already knows its rooms). */
  roomChangedSince(roomId: string, serial: number): boolean {
    if (serial > this.#serial) return this.#changed.has(roomId);
    return (this.#changed.get(roomId) ?? 0) > serial;
  }

  /** Stops the expiry timer (shutdown). Later `set` calls still work but nothing expires. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #update(roomId: string, userId: string, typing: boolean): void {
    for (const l of this.#updates) l(roomId, userId, typing);
  }

  #bump(roomId: string): void {
    this.#serial++;
    // Re-insert so that the map stays ordered by change.
    this.#changed.delete(roomId);
    this.#changed.set(roomId, this.#serial);
    this.#onChange(roomId);
  }

  #schedule(at: number): void {
    if (this.#closed || at >= this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, at - this.#now()));
    this.#timer.unref?.();
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#now();
    let next = Infinity;
    for (const [roomId, users] of [...this.#typing]) {
      let changed = false;
      for (const [userId, expiry] of [...users]) {
        if (expiry <= now) {
          users.delete(userId);
          changed = true;
          this.#update(roomId, userId, false);
        } else if (expiry < next) next = expiry;
      }
      if (users.size === 0) this.#typing.delete(roomId);
      if (changed) this.#bump(roomId);
    }
    if (next !== Infinity) this.#schedule(next);
  }
}
