/**
 * Wakes long-polling /sync requests when something that concerns them commits. Waiters are indexed by user and by
 * room, so a commit touches only the waiters it concerns; an idle waiter costs one timer and two map entries.
 * Kept behind this small interface so that a multi-process deployment can feed it from PostgreSQL LISTEN/NOTIFY.
 */
export interface Waiter {
  /** Resolves when woken (true) or at the timeout (false). */
  readonly woken: Promise<boolean>;
  /** Adds rooms to watch (a sync learns of them while computing). */
  watchRooms(roomIds: Iterable<string>): void;
  cancel(): void;
}

interface Entry {
  userId: string;
  rooms: Set<string>;
  resolve: (woken: boolean) => void;
  timer: NodeJS.Timeout | undefined;
  done: boolean;
}

export class Notifier {
  #byUser = new Map<string, Set<Entry>>();
  #byRoom = new Map<string, Set<Entry>>();
  #count = 0;
  #closed = false;

  /** Number of long-polls waiting now. */
  get waiting(): number {
    return this.#count;
  }

  /** Registers a waiter before the caller computes its response, so no commit in between can be missed. */
  register(userId: string, roomIds: Iterable<string>, timeoutMs: number): Waiter {
    let resolve!: (woken: boolean) => void;
    const woken = new Promise<boolean>((r) => (resolve = r));
    const entry: Entry = { userId, rooms: new Set(), resolve, timer: undefined, done: false };
    add(this.#byUser, userId, entry);
    this.#count++;
    const watchRooms = (ids: Iterable<string>): void => {
      for (const id of ids) {
        if (entry.rooms.has(id)) continue;
        entry.rooms.add(id);
        add(this.#byRoom, id, entry);
      }
    };
    watchRooms(roomIds);
    // After shutdown nothing can wake a new waiter: it times out at once, so a long-poll that was woken by the
    // shutdown and found nothing new answers now instead of registering again and again until its timeout.
    if (this.#closed) this.#finish(entry, false);
    else if (timeoutMs > 0) {
      entry.timer = setTimeout(() => this.#finish(entry, false), timeoutMs);
      entry.timer.unref?.();
    }
    return { woken, watchRooms, cancel: () => this.#finish(entry, false) };
  }

  notifyUsers(userIds: Iterable<string>): void {
    for (const u of userIds) for (const e of [...(this.#byUser.get(u) ?? [])]) this.#finish(e, true);
  }

  notifyRooms(roomIds: Iterable<string>): void {
    for (const r of roomIds) for (const e of [...(this.#byRoom.get(r) ?? [])]) this.#finish(e, true);
  }

  /** Wakes everyone; later waiters time out at once (shutdown). */
  wakeAll(): void {
    this.#closed = true;
    for (const set of [...this.#byUser.values()]) for (const e of [...set]) this.#finish(e, true);
  }

  #finish(e: Entry, woken: boolean): void {
    if (e.done) return;
    e.done = true;
    if (e.timer) clearTimeout(e.timer);
    remove(this.#byUser, e.userId, e);
    for (const r of e.rooms) remove(this.#byRoom, r, e);
    this.#count--;
    e.resolve(woken);
  }
}

function add(map: Map<string, Set<Entry>>, key: string, e: Entry): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(e);
}

function remove(map: Map<string, Set<Entry>>, key: string, e: Entry): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(e);
  if (set.size === 0) map.delete(key);
}
