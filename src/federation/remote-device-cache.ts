/**
 * Other servers' users' device keys and cross-signing keys, kept for users who share a room with a user of this
 * server (Synapse keeps such "tracked" device lists too). Those servers tell this one of every change
 * (m.device_list_update, m.signing_key_update), which marks the user's entry stale, so a /keys/query for them is
 * answered here until then instead of asking their server each time; when their server cannot be reached, the last
 * known keys are served rather than none (a client can still encrypt to them). An entry is refreshed after a day even
 * without an update, in case one was lost. In memory and bounded: a restart starts empty.
 */
import { LruCache } from '../cache/lru.js';
import type { RemoteKeys } from '../e2ee/keys.js';
import type { JsonObject } from '../rooms/event.js';
import { isJsonObject } from '../util/validate.js';

export interface CachedUserKeys {
  /** Device id → device keys, as the user's server answered. */
  devices: JsonObject;
  master?: JsonObject | undefined;
  selfSigning?: JsonObject | undefined;
  fetchedAt: number;
  stale: boolean;
}

const MAX_USERS = 10_000;
const MAX_AGE_MS = 24 * 60 * 60 * 1000;

export class RemoteDeviceCache {
  readonly lru = new LruCache<string, CachedUserKeys>('remote_device_keys', MAX_USERS);

  constructor(private readonly maxAgeMs = MAX_AGE_MS) {}

  /** The entry when it is neither marked stale nor too old. */
  fresh(userId: string, now = Date.now()): CachedUserKeys | undefined {
    const e = this.lru.get(userId);
    return e && !e.stale && now - e.fetchedAt < this.maxAgeMs ? e : undefined;
  }

  /** The last known entry, stale or not (the fallback when the user's server is unreachable). */
  last(userId: string): CachedUserKeys | undefined {
    return this.lru.get(userId);
  }

  put(userId: string, entry: CachedUserKeys): void {
    this.lru.set(userId, entry);
  }

  /** The user's devices or cross-signing keys changed: ask their server next time. */
  invalidate(userId: string): void {
    const e = this.lru.get(userId);
    if (e) e.stale = true;
  }
}

/** `devices` narrowed to the device ids asked for (all when none are named). */
function onlyAsked(devices: JsonObject, asked: readonly string[]): JsonObject {
  if (asked.length === 0) return devices;
  return Object.fromEntries(Object.entries(devices).filter(([id]) => asked.includes(id)));
}

const entryOf = (section: unknown, userId: string): JsonObject | undefined => {
  const v = isJsonObject(section) ? section[userId] : undefined;
  return isJsonObject(v) ? v : undefined;
};

/**
 * `inner` with the cache in front of its `query`: tracked users with a fresh entry are answered from the cache, the
 * others asked for in full (all devices, so the entry is complete) and cached when tracked. When the server fails and
 * every user asked about has an entry, the entries answer; otherwise the failure stands. `claim` is not cached.
 */
export function cachingRemoteKeys(
  inner: RemoteKeys,
  cache: RemoteDeviceCache,
  tracked: (userIds: readonly string[]) => Promise<Set<string>>,
): RemoteKeys {
  return {
    claim: (server, oneTimeKeys, timeoutMs) => inner.claim(server, oneTimeKeys, timeoutMs),
    async query(server, deviceKeys, timeoutMs) {
      const now = Date.now();
      const users = Object.keys(deviceKeys);
      const followed = await tracked(users);
      const answered = new Map<string, CachedUserKeys>();
      const ask: string[] = [];
      for (const u of users) {
        const e = followed.has(u) ? cache.fresh(u, now) : undefined;
        if (e) answered.set(u, e);
        else ask.push(u);
      }
      if (ask.length) {
        let res: JsonObject;
        try {
          res = await inner.query(server, Object.fromEntries(ask.map((u) => [u, []])), timeoutMs);
        } catch (err) {
          const known = ask.map((u) => [u, cache.last(u)] as const);
          if (known.some(([, e]) => e === undefined)) throw err;
          for (const [u, e] of known) if (e) answered.set(u, e);
          res = {};
        }
        for (const u of ask) {
          if (answered.has(u)) continue;
          const entry: CachedUserKeys = {
            devices: entryOf(res.device_keys, u) ?? {},
            master: entryOf(res.master_keys, u),
            selfSigning: entryOf(res.self_signing_keys, u),
            fetchedAt: now,
            stale: false,
          };
          if (followed.has(u)) cache.put(u, entry);
          answered.set(u, entry);
        }
      }
      const out = {
        device_keys: {} as JsonObject,
        master_keys: {} as JsonObject,
        self_signing_keys: {} as JsonObject,
      };
      for (const [u, e] of answered) {
        out.device_keys[u] = onlyAsked(e.devices, deviceKeys[u] ?? []);
        if (e.master) out.master_keys[u] = e.master;
        if (e.selfSigning) out.self_signing_keys[u] = e.selfSigning;
      }
      return out;
    },
  };
}
