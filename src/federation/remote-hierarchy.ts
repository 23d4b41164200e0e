/**
 * Spaces this server is not in, asked over federation (server-server API "Spaces": GET
 * /_matrix/federation/v1/hierarchy/{roomId}), as Synapse's RoomSummaryHandler does for the client /hierarchy: the
 * servers named by the `via` of the link are tried in order until one answers for that room. The answer is checked
 * field by field (remote summaries as in the directory; only valid m.space.child stripped events) and cached briefly
 * per room and suggested_only, since the spec asks for the responses to be cached; the cache is bounded.
 */
import type { StrippedChild } from '../roomsvc/hierarchy.js';
import { isJsonObject } from '../util/validate.js';
import type { FederationClient } from './client.js';
import { checkedSummary, DIRECTORY_MAX_BYTES, type RemoteRoomSummary } from './remote-directory.js';

/** A space as another server described it to us. */
export interface RemoteSpace {
  room: RemoteRoomSummary;
  childrenState: StrippedChild[];
  /** The summaries of the children that server knows and lets us see, by room id. */
  children: Map<string, RemoteRoomSummary>;
  /** Children that server says we have no way to peek or join. */
  inaccessible: Set<string>;
}

export interface RemoteHierarchyOptions {
  ttlMs?: number;
  maxEntries?: number;
  /** Servers tried per room at most. */
  maxServers?: number;
}

/** A valid m.space.child stripped event with its origin_server_ts, or undefined. */
function checkedChild(value: unknown, suggestedOnly: boolean): StrippedChild | undefined {
  if (!isJsonObject(value)) return undefined;
  const { type, state_key, content, sender, origin_server_ts } = value;
  if (type !== 'm.space.child' || typeof state_key !== 'string' || !state_key.startsWith('!'))
    return undefined;
  if (typeof sender !== 'string' || typeof origin_server_ts !== 'number' || !isJsonObject(content))
    return undefined;
  const via = content.via;
  if (!Array.isArray(via) || via.length === 0 || !via.every((v) => typeof v === 'string')) return undefined;
  if (suggestedOnly && content.suggested !== true) return undefined;
  return { type, state_key, content, sender, origin_server_ts };
}

/** The checked answer of `server` for `roomId`, or undefined when it is not an answer about that room. */
function checkedSpace(roomId: string, body: unknown, suggestedOnly: boolean): RemoteSpace | undefined {
  if (!isJsonObject(body) || !isJsonObject(body.room)) return undefined;
  const room = checkedSummary(body.room);
  if (!room || room.room_id !== roomId || !Array.isArray(body.room.children_state)) return undefined;
  const childrenState: StrippedChild[] = [];
  for (const c of body.room.children_state) {
    const child = checkedChild(c, suggestedOnly);
    if (child) childrenState.push(child);
  }
  const children = new Map<string, RemoteRoomSummary>();
  for (const c of Array.isArray(body.children) ? body.children : []) {
    const summary = checkedSummary(c);
    if (summary) children.set(summary.room_id, summary);
  }
  const inaccessible = new Set<string>();
  for (const r of Array.isArray(body.inaccessible_children) ? body.inaccessible_children : []) {
    if (typeof r === 'string') inaccessible.add(r);
  }
  return { room, childrenState, children, inaccessible };
}

export class RemoteHierarchy {
  readonly #cache = new Map<string, { expires: number; space: RemoteSpace }>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #maxServers: number;

  constructor(
    private readonly client: Pick<FederationClient, 'get'>,
    private readonly serverName: string,
    opts: RemoteHierarchyOptions = {},
  ) {
    this.#ttlMs = opts.ttlMs ?? 60_000;
    this.#maxEntries = opts.maxEntries ?? 1000;
    this.#maxServers = opts.maxServers ?? 5;
  }

  /** The space `roomId` as the first of `via` that answers describes it; undefined when none does. */
  async fetch(
    roomId: string,
    via: readonly string[],
    suggestedOnly: boolean,
  ): Promise<RemoteSpace | undefined> {
    const key = `${suggestedOnly ? 's' : 'a'}${roomId}`;
    const hit = this.#cache.get(key);
    if (hit && hit.expires > Date.now()) return hit.space;
    const servers = [...new Set(via)].filter((s) => s !== this.serverName).slice(0, this.#maxServers);
    const path = `/_matrix/federation/v1/hierarchy/${encodeURIComponent(roomId)}`;
    for (const server of servers) {
      try {
        const res = await this.client.get(server, path, {
          query: { suggested_only: String(suggestedOnly) },
          maxBytes: DIRECTORY_MAX_BYTES,
        });
        const space = checkedSpace(roomId, res.body, suggestedOnly);
        if (!space) continue;
        this.#remember(key, space);
        return space;
      } catch {
        // Unreachable, refused or not in the room: the next server may know it.
      }
    }
    return undefined;
  }

  #remember(key: string, space: RemoteSpace): void {
    const now = Date.now();
    this.#cache.delete(key);
    for (const [k, v] of this.#cache) {
      if (v.expires > now && this.#cache.size < this.#maxEntries) break;
      this.#cache.delete(k);
    }
    this.#cache.set(key, { expires: now + this.#ttlMs, space });
  }
}
