/**
 * Server-side search of room events (client-server API "Server Side Search", category `room_events`).
 *
 * The index (src/storage/search.ts) proposes candidates from the rooms the user is or was in, up to their leave;
 * history visibility (src/read/visibility.ts) decides which of them the user may see, as Synapse applies
 * filter_events_for_client to its search results. Candidates are scanned in batches until a page is full.
 *
 * `next_batch` is opaque to clients: base64url of a small JSON record of the ordering, the position after the
 * last candidate consumed (a stream ordering for `recent`, a number of candidates for `rank`) and, for a token
 * handed out inside a group, the group it continues.
 */
import { z } from 'zod';
import { invalidParam } from '../api/errors.js';
import type { ClientEvent } from '../rooms/event.js';
import type { Storage } from '../storage/db.js';
import {
  contextEventNids,
  currentSnapshots,
  parseSearchTerm,
  roomsBeenIn,
  SEARCH_KEYS,
  searchEvents,
  SEARCHABLE_TYPES,
  type MembershipRow,
  type SearchHit,
  type SearchKey,
  type SearchQuery,
} from '../storage/search.js';
import { stateKey } from '../storage/state.js';
import type { RoomEventFilter } from '../sync/filter.js';
import { clientEvent, type EventReader, type LoadedEvent } from './event-reader.js';
import { formatStreamToken } from './tokens.js';
import { filterVisible } from './visibility.js';

export interface SearchDeps {
  storage: Storage;
  reader: EventReader;
}

export type GroupKey = 'room_id' | 'sender';

export interface RoomEventsCriteria {
  searchTerm: string;
  keys?: SearchKey[] | undefined;
  filter?: RoomEventFilter | undefined;
  orderBy: 'rank' | 'recent';
  eventContext?: { beforeLimit: number; afterLimit: number; includeProfile: boolean } | undefined;
  includeState: boolean;
  groupBy: GroupKey[];
}

export interface SearchContext {
  start: string;
  end: string;
  events_before: ClientEvent[];
  events_after: ClientEvent[];
  profile_info?: Record<string, { displayname?: string; avatar_url?: string }>;
}

export interface SearchResult {
  rank: number;
  result: ClientEvent;
  context?: SearchContext;
}

export interface GroupValue {
  results: string[];
  order: number;
  next_batch?: string;
}

export interface RoomEventsResults {
  count: number;
  highlights: string[];
  results: SearchResult[];
  next_batch?: string;
  state?: Record<string, ClientEvent[]>;
  groups?: Partial<Record<GroupKey, Record<string, GroupValue>>>;
}

const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 100;
const MAX_CONTEXT = 100;
/** Candidates looked at per request before handing back a token to continue from. */
const MAX_SCAN = 1000;
const UNTIL_NOW = Number.MAX_SAFE_INTEGER;

// ---- tokens ----------------------------------------------------------------------------------------------

const Batch = z.strictObject({
  o: z.enum(['rank', 'recent']),
  p: z.int().min(0).max(UNTIL_NOW),
  g: z.enum(['room_id', 'sender']).optional(),
  k: z.string().optional(),
});
type Batch = z.infer<typeof Batch>;

export function encodeBatch(b: Batch): string {
  return Buffer.from(JSON.stringify(b)).toString('base64url');
}

/** Parses a `next_batch` token; anything this server did not hand out is 400 M_INVALID_PARAM. */
export function decodeBatch(token: string): Batch {
  const bad = invalidParam('Invalid next_batch token');
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(token)) throw bad;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw bad;
  }
  const parsed = Batch.safeParse(value);
  if (!parsed.success || (parsed.data.g === undefined) !== (parsed.data.k === undefined)) throw bad;
  return parsed.data;
}

// ---- criteria --------------------------------------------------------------------------------------------

function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const re = pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${re.join('.*')}$`, 's').test(value);
}

/** The indexed event types the keys and the filter's types / not_types leave. */
function searchTypes(keys: readonly SearchKey[] | undefined, f: RoomEventFilter): string[] {
  return SEARCHABLE_TYPES.filter(
    (t) =>
      (keys === undefined || keys.includes(SEARCH_KEYS[t])) &&
      (f.types === undefined || f.types.some((p) => globMatch(p, t))) &&
      !(f.not_types ?? []).some((p) => globMatch(p, t)),
  );
}

function intersectSenders(f: RoomEventFilter, batch: Batch | undefined): string[] | undefined {
  if (batch?.g !== 'sender') return f.senders;
  const k = batch.k as string;
  return f.senders === undefined || f.senders.includes(k) ? [k] : [];
}

// ---- search ----------------------------------------------------------------------------------------------

interface Found {
  ev: LoadedEvent;
  hit: SearchHit;
}

export async function searchRoomEvents(
  deps: SearchDeps,
  userId: string,
  c: RoomEventsCriteria,
  nextBatch: string | undefined,
): Promise<RoomEventsResults> {
  const batch = nextBatch === undefined ? undefined : decodeBatch(nextBatch);
  if (batch && batch.o !== c.orderBy)
    throw invalidParam('next_batch belongs to a search with another order_by');
  const f: RoomEventFilter = c.filter ?? {};
  const limit = Math.min(f.limit ?? DEFAULT_LIMIT, MAX_LIMIT);
  const parsed = parseSearchTerm(c.searchTerm);

  let rooms = await roomsBeenIn(deps.storage.db, userId);
  if (f.rooms) {
    const wanted = new Set(f.rooms);
    rooms = rooms.filter((r) => wanted.has(r.roomId));
  }
  if (f.not_rooms) {
    const unwanted = new Set(f.not_rooms);
    rooms = rooms.filter((r) => !unwanted.has(r.roomId));
  }
  if (batch?.g === 'room_id') rooms = rooms.filter((r) => r.roomId === batch.k);
  const byNid = new Map(rooms.map((r) => [r.roomNid, r]));
  const senders = intersectSenders(f, batch);

  const query: SearchQuery = {
    parsed,
    rooms: rooms.map((r) => ({ roomNid: r.roomNid, until: until(r) })),
    types: searchTypes(c.keys, f),
    ...(senders !== undefined ? { senders } : {}),
    ...(f.not_senders !== undefined ? { notSenders: f.not_senders } : {}),
    ...(f.contains_url !== undefined ? { containsUrl: f.contains_url } : {}),
    order: c.orderBy,
    limit: Math.max(limit + 1, 20),
  };

  const found: Found[] = [];
  // recent: the stream ordering below which to continue; rank: how many candidates precede the next one.
  let cursor: number | undefined = batch?.p;
  let count = 0;
  let more = false;
  let scanned = 0;
  scan: for (let first = true; ; first = false) {
    const page = await searchEvents(deps.storage.db, deps.storage.engine, {
      ...query,
      ...(c.orderBy === 'recent'
        ? cursor !== undefined
          ? { beforeStream: cursor }
          : {}
        : { offset: cursor ?? 0 }),
      withCount: first,
    });
    if (first) count = page.count ?? 0;
    const loaded = await deps.reader.byNids(page.hits.map((h) => h.eventNid));
    const candidates = page.hits.flatMap((h) => {
      const ev = loaded.get(h.eventNid);
      return ev && !ev.redactedBy ? [ev] : [];
    });
    const visible = new Set((await filterVisible(visDeps(deps), userId, candidates)).map((ev) => ev.nid));
    for (const hit of page.hits) {
      const ev = loaded.get(hit.eventNid);
      const ok = ev !== undefined && visible.has(hit.eventNid);
      if (ok && found.length === limit) {
        more = true;
        break scan;
      }
      if (ok) found.push({ ev, hit });
      cursor = c.orderBy === 'recent' ? hit.streamOrdering : (cursor ?? 0) + 1;
    }
    scanned += page.hits.length;
    if (page.hits.length < query.limit) break;
    if (scanned >= MAX_SCAN) {
      more = true;
      break;
    }
  }

  const out: RoomEventsResults = {
    count,
    highlights: highlights(parsed.words, found),
    results: [],
  };
  const groupScope = batch?.g !== undefined ? { g: batch.g, k: batch.k as string } : {};
  const next =
    more && cursor !== undefined ? encodeBatch({ o: c.orderBy, p: cursor, ...groupScope }) : undefined;
  if (next) out.next_batch = next;

  for (const { ev, hit } of found) {
    const result: SearchResult = { rank: hit.rank, result: clientEvent(ev) };
    if (c.eventContext) {
      const room = byNid.get(hit.roomNid) as MembershipRow;
      result.context = await eventContext(deps, userId, ev, hit.roomNid, until(room), c.eventContext);
    }
    out.results.push(result);
  }
  if (c.includeState) out.state = await roomStates(deps, found, byNid);
  if (c.groupBy.length) out.groups = groups(c, found, batch, more, next);
  return out;
}

const until = (r: MembershipRow): number => (r.membership === 'join' ? UNTIL_NOW : r.streamOrdering);

const visDeps = (deps: SearchDeps) => ({ reader: deps.reader, db: deps.storage.db });

/** The search words and the words of the results they match (as prefixes), for clients to highlight. */
function highlights(words: readonly string[], found: readonly Found[]): string[] {
  const out = new Set(words);
  if (words.length === 0) return [];
  for (const { hit } of found) {
    for (const w of hit.value.normalize('NFC').match(/[\p{L}\p{N}][\p{L}\p{N}\p{M}]*/gu) ?? []) {
      const lw = w.toLowerCase();
      if (words.some((q) => lw.startsWith(q))) out.add(w);
    }
  }
  return [...out].slice(0, 100);
}

/**
 * Groups by room or sender; `order` is the 1-based position of the group's first result. A group's next_batch
 * continues the search inside that group: for `recent` from the same position as the global token, for `rank`
 * on a first page (the group's results on it are exactly its best ones) after them.
 */
function groups(
  c: RoomEventsCriteria,
  found: readonly Found[],
  batch: Batch | undefined,
  more: boolean,
  next: string | undefined,
): Partial<Record<GroupKey, Record<string, GroupValue>>> {
  const out: Partial<Record<GroupKey, Record<string, GroupValue>>> = {};
  for (const key of c.groupBy) {
    const byValue: Record<string, GroupValue> = {};
    for (const [i, { ev }] of found.entries()) {
      const value = key === 'room_id' ? ev.roomId : ev.pdu.sender;
      const g = (byValue[value] ??= { results: [], order: i + 1 });
      g.results.push(ev.eventId);
    }
    if (more) {
      for (const [value, g] of Object.entries(byValue)) {
        if (batch?.g !== undefined) {
          if (batch.g === key && next) g.next_batch = next;
        } else if (c.orderBy === 'recent' && next) {
          g.next_batch = encodeBatch({ ...decodeBatch(next), g: key, k: value });
        } else if (c.orderBy === 'rank' && batch === undefined) {
          g.next_batch = encodeBatch({ o: 'rank', p: g.results.length, g: key, k: value });
        }
      }
    }
    out[key] = byValue;
  }
  return out;
}

/** Events around a result (visible ones only), pagination tokens around them and, if asked, the senders' profiles. */
async function eventContext(
  deps: SearchDeps,
  userId: string,
  ev: LoadedEvent,
  roomNid: number,
  roomUntil: number,
  opts: { beforeLimit: number; afterLimit: number; includeProfile: boolean },
): Promise<SearchContext> {
  const db = deps.storage.db;
  const pos = ev.streamOrdering ?? 0;
  const load = async (dir: 'before' | 'after', n: number) => {
    const nids = await contextEventNids(db, roomNid, pos, dir, Math.min(n, MAX_CONTEXT), roomUntil);
    return filterVisible(visDeps(deps), userId, await deps.reader.listByNids(nids));
  };
  const before = await load('before', opts.beforeLimit);
  const after = await load('after', opts.afterLimit);
  const positions = [pos, ...[...before, ...after].map((e) => e.streamOrdering ?? pos)];
  const ctx: SearchContext = {
    start: formatStreamToken(Math.min(...positions) - 1),
    end: formatStreamToken(Math.max(...positions)),
    events_before: await format(deps, before),
    events_after: await format(deps, after),
  };
  if (opts.includeProfile) {
    ctx.profile_info = await profiles(deps, after.at(-1) ?? ev, [ev, ...before, ...after]);
  }
  return ctx;
}

/** Client format, with redacted_because for redacted events. */
async function format(deps: SearchDeps, events: readonly LoadedEvent[]): Promise<ClientEvent[]> {
  const redactions = new Map<string, LoadedEvent>();
  for (const id of new Set(events.flatMap((e) => (e.redactedBy ? [e.redactedBy] : [])))) {
    const r = await deps.reader.byId(id);
    if (r) redactions.set(id, r);
  }
  const now = Date.now();
  return events.map((e) => clientEvent(e, { now, redactions }));
}

/** The profiles of `events`' senders in the room state at `last` (the latest event of the context). */
async function profiles(
  deps: SearchDeps,
  last: LoadedEvent,
  events: readonly LoadedEvent[],
): Promise<Record<string, { displayname?: string; avatar_url?: string }>> {
  const out: Record<string, { displayname?: string; avatar_url?: string }> = {};
  const senders = new Set(events.map((e) => e.pdu.sender));
  if (last.stateSnapshotNid === null) return out;
  const snap = await deps.reader.snapshot(last.stateSnapshotNid, {
    roomId: last.roomId,
    eventId: last.eventId,
  });
  if (!snap) return out;
  const map = new Map(snap);
  if (last.pdu.state_key !== undefined) map.set(stateKey(last.pdu.type, last.pdu.state_key), last.nid);
  const nids = [...senders].flatMap((s) => {
    const nid = map.get(stateKey('m.room.member', s));
    return nid === undefined ? [] : [nid];
  });
  for (const m of (await deps.reader.byNids(nids)).values()) {
    const p: { displayname?: string; avatar_url?: string } = {};
    if (typeof m.pdu.content.displayname === 'string') p.displayname = m.pdu.content.displayname;
    if (typeof m.pdu.content.avatar_url === 'string') p.avatar_url = m.pdu.content.avatar_url;
    if (m.pdu.state_key !== undefined) out[m.pdu.state_key] = p;
  }
  return out;
}

/**
 * The state of each room with results: the current state, or for a room the user left the state just after
 * their leave (what they last saw).
 */
async function roomStates(
  deps: SearchDeps,
  found: readonly Found[],
  rooms: ReadonlyMap<number, MembershipRow>,
): Promise<Record<string, ClientEvent[]>> {
  const out: Record<string, ClientEvent[]> = {};
  const wanted = [...rooms.values()].filter((r) => found.some((f) => f.ev.roomId === r.roomId));
  const current = await currentSnapshots(
    deps.storage.db,
    wanted.filter((r) => r.membership === 'join').map((r) => r.roomNid),
  );
  for (const r of wanted) {
    let map: Map<string, number> | undefined;
    if (r.membership === 'join') {
      const snap = current.get(r.roomNid);
      const m = snap === undefined ? undefined : await deps.reader.snapshot(snap, { roomId: r.roomId });
      map = m && new Map(m);
    } else {
      const leave = (await deps.reader.byNids([r.eventNid])).get(r.eventNid);
      const m =
        leave?.stateSnapshotNid == null
          ? undefined
          : await deps.reader.snapshot(leave.stateSnapshotNid, { roomId: r.roomId });
      if (m && leave?.pdu.state_key !== undefined) {
        map = new Map(m);
        map.set(stateKey(leave.pdu.type, leave.pdu.state_key), leave.nid);
      }
    }
    const state = map ? await deps.reader.stateEvents(map, r.roomId) : new Map<string, LoadedEvent>();
    out[r.roomId] = await format(deps, [...state.values()]);
  }
  return out;
}
