/**
 * What each sliding sync connection has already been sent by the room-scoped extensions (account_data, receipts,
 * typing), per response position, as Synapse's per-connection state: a room entering the window gets the room's
 * full data once, then only deltas while it stays there. Kept in memory only: after a restart, or for a `pos`
 * this process never answered, every room counts as never sent, so the client gets full data again (more than
 * it needs, never less).
 */
import type { SlidingPosition } from './extensions.js';

export interface SentRooms {
  accountData: ReadonlySet<string>;
  receipts: ReadonlySet<string>;
  typing: ReadonlySet<string>;
}

/** Positions remembered per connection: the newest few, so a client retrying an older `pos` still matches. */
const POSITIONS_PER_CONNECTION = 4;
/** Connections remembered per storage (least recently used are dropped first). */
const MAX_CONNECTIONS = 10_000;

const posKey = (p: SlidingPosition): string => `${p.stream}_${p.typing}`;

export class ExtensionMemory {
  readonly #connections = new Map<string, Map<string, SentRooms>>();

  /** What the response ending at `since` had sent, or undefined when unknown (initial, restart, expired). */
  get(connKey: string, since: SlidingPosition | null): SentRooms | undefined {
    const conn = this.#connections.get(connKey);
    if (!conn) return undefined;
    // Most recently used last.
    this.#connections.delete(connKey);
    this.#connections.set(connKey, conn);
    return since === null ? undefined : conn.get(posKey(since));
  }

  /** Records what the response ending at `to` has sent; an initial request forgets the connection's past. */
  set(connKey: string, initial: boolean, to: SlidingPosition, sent: SentRooms): void {
    let conn = this.#connections.get(connKey);
    if (!conn || initial) conn = new Map();
    this.#connections.delete(connKey);
    this.#connections.set(connKey, conn);
    const key = posKey(to);
    conn.delete(key);
    conn.set(key, sent);
    while (conn.size > POSITIONS_PER_CONNECTION) {
      const oldest = conn.keys().next().value;
      if (oldest === undefined) break;
      conn.delete(oldest);
    }
    while (this.#connections.size > MAX_CONNECTIONS) {
      const oldest = this.#connections.keys().next().value;
      if (oldest === undefined) break;
      this.#connections.delete(oldest);
    }
  }
}

const memories = new WeakMap<object, ExtensionMemory>();

/** The memory of one server (keyed by its storage object, so servers sharing a process never mix). */
export function extensionMemoryOf(owner: object): ExtensionMemory {
  let m = memories.get(owner);
  if (!m) memories.set(owner, (m = new ExtensionMemory()));
  return m;
}
