/**
 * The full-text search index of room events (migration 0003): written with the event by the room writer,
 * queried by src/read/search.ts.
 *
 * The two engines differ only in the full-text parts (table, match and rank expressions), built by
 * `sqliteFts` and `postgresFts`; the rest of each query is shared. User input never reaches the SQL text: the
 * search term is parsed into words and phrases (`parseSearchTerm`), rebuilt in each engine's query syntax from
 * letters and digits only, and bound as a parameter.
 */
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { JsonObject, Pdu } from '../rooms/event.js';
import type { Engine } from './dialect.js';
import type { Database } from './schema.js';
import type { Executor } from './users.js';

/** The searchable key of each indexed event type. */
export const SEARCH_KEYS = {
  'm.room.message': 'content.body',
  'm.room.name': 'content.name',
  'm.room.topic': 'content.topic',
} as const;

export type SearchKey = (typeof SEARCH_KEYS)[keyof typeof SEARCH_KEYS];
export const SEARCHABLE_TYPES = Object.keys(SEARCH_KEYS) as (keyof typeof SEARCH_KEYS)[];

/** The text of `pdu` to index, or undefined when the event is not searchable. */
export function searchableText(pdu: Pdu): { key: SearchKey; value: string } | undefined {
  if (!(pdu.type in SEARCH_KEYS)) return undefined;
  const type = pdu.type as keyof typeof SEARCH_KEYS;
  const key = SEARCH_KEYS[type];
  const content = pdu.content;
  const field = key.slice('content.'.length);
  let value = typeof content[field] === 'string' ? (content[field] as string) : '';
  if (type === 'm.room.topic') {
    // The spec also searches the text/plain representation in m.topic (normally a copy of `topic`).
    const plain = plainTopic(content);
    if (plain !== undefined && plain !== value) value = value ? `${value}\n${plain}` : plain;
  }
  return value.trim() ? { key, value } : undefined;
}

function plainTopic(content: JsonObject): string | undefined {
  const block = content['m.topic'];
  if (typeof block !== 'object' || block === null || Array.isArray(block)) return undefined;
  const texts = (block as JsonObject)['m.text'];
  if (!Array.isArray(texts)) return undefined;
  for (const t of texts as unknown[]) {
    if (typeof t !== 'object' || t === null) continue;
    const rep = t as JsonObject;
    if (typeof rep.body === 'string' && (rep.mimetype ?? 'text/plain') === 'text/plain') return rep.body;
  }
  return undefined;
}

/**
 * Keeps the index in step with one event being written, inside the writer's transaction: a searchable event
 * gets its row; a redaction removes its target's row.
 */
export async function indexEventForSearch(
  trx: Transaction<Database>,
  engine: Engine,
  pdu: Pdu,
  eventNid: number,
  roomNid: number,
  deferred?: SearchRow[],
): Promise<void> {
  if (pdu.type === 'm.room.redaction') {
    const target = typeof pdu.redacts === 'string' ? pdu.redacts : pdu.content.redacts;
    if (typeof target !== 'string') return;
    // The target may be among the rows not written yet.
    if (deferred?.length) await insertSearchRows(trx, engine, deferred.splice(0));
    await removeFromSearch(trx, engine, target, roomNid);
    return;
  }
  const entry = searchableText(pdu);
  if (!entry) return;
  if (deferred) {
    deferred.push({ eventNid, roomNid, key: entry.key, value: entry.value });
    return;
  }
  if (engine === 'sqlite') {
    await sql`INSERT INTO event_search (rowid, value, room_nid, key)
      VALUES (${eventNid}, ${entry.value}, ${roomNid}, ${entry.key})`.execute(trx);
  } else {
    await sql`INSERT INTO event_search (event_nid, room_nid, key, value)
      VALUES (${eventNid}, ${roomNid}, ${entry.key}, ${entry.value})`.execute(trx);
  }
}

/** A search row written later with others (the group commit's, see insertSearchRows). */
export interface SearchRow {
  eventNid: number;
  roomNid: number;
  key: string;
  value: string;
}

/** Search rows of many events in a few multi-row inserts, after their events (the group commit's). */
export async function insertSearchRows(
  trx: Transaction<Database>,
  engine: Engine,
  rows: readonly SearchRow[],
): Promise<void> {
  for (let i = 0; i < rows.length; i += 200) {
    const chunk = rows.slice(i, i + 200);
    if (engine === 'sqlite') {
      const values = sql.join(chunk.map((r) => sql`(${r.eventNid}, ${r.value}, ${r.roomNid}, ${r.key})`));
      await sql`INSERT INTO event_search (rowid, value, room_nid, key) VALUES ${values}`.execute(trx);
    } else {
      const values = sql.join(chunk.map((r) => sql`(${r.eventNid}, ${r.roomNid}, ${r.key}, ${r.value})`));
      await sql`INSERT INTO event_search (event_nid, room_nid, key, value) VALUES ${values}`.execute(trx);
    }
  }
}

async function removeFromSearch(
  db: Executor,
  engine: Engine,
  eventId: string,
  roomNid: number,
): Promise<void> {
  const nid = sql`(SELECT event_nid FROM events WHERE event_id = ${eventId} AND room_nid = ${roomNid})`;
  if (engine === 'sqlite') await sql`DELETE FROM event_search WHERE rowid IN ${nid}`.execute(db);
  else await sql`DELETE FROM event_search WHERE event_nid IN ${nid}`.execute(db);
}

// ---------------------------------------------------------------------------------------------------------
// Search terms

/** One operand: a single word (prefix-matched, as Synapse does) or a quoted phrase. */
export interface SearchTerm {
  words: string[];
  phrase: boolean;
}

/**
 * A parsed search: `all` is a conjunction of disjunctions (`a b or c` is a AND (b OR c)), `none` the terms
 * prefixed with `-`. Words are runs of letters, digits and combining marks; everything else separates them.
 */
export interface ParsedSearch {
  all: SearchTerm[][];
  none: SearchTerm[];
  /** The lower-cased words of the positive terms, for highlights. */
  words: string[];
}

const WORD = /[\p{L}\p{N}][\p{L}\p{N}\p{M}]*/gu;
const MAX_TERMS = 64;

/** Parses free text as Synapse does: words, "quoted phrases", `or` between terms and `-` for exclusion. */
export function parseSearchTerm(text: string): ParsedSearch {
  const all: SearchTerm[][] = [];
  const none: SearchTerm[] = [];
  const words = new Set<string>();
  let orPending = false;
  let count = 0;
  const chunk = /(-?)"([^"]*)"?|(\S+)/gu;
  for (const m of text.matchAll(chunk)) {
    if (count >= MAX_TERMS) break;
    let negated = m[1] === '-';
    let raw = m[2] ?? m[3] ?? '';
    const phrase = m[2] !== undefined;
    if (!phrase && raw.toLowerCase() === 'or') {
      orPending = all.length > 0;
      continue;
    }
    if (!phrase && raw.startsWith('-')) {
      negated = true;
      raw = raw.slice(1);
    }
    const found = (raw.normalize('NFC').match(WORD) ?? []).map((w) => w.toLowerCase());
    if (found.length === 0) continue;
    count++;
    // An unquoted chunk such as `e-mail` or `foo.bar` is a phrase of its words, as the tokenizers see it.
    const term: SearchTerm = { words: found, phrase: phrase || found.length > 1 };
    if (negated) {
      none.push(term);
      orPending = false;
      continue;
    }
    for (const w of found) words.add(w);
    const last = all.at(-1);
    if (orPending && last) last.push(term);
    else all.push([term]);
    orPending = false;
  }
  return { all, none, words: [...words] };
}

/** An FTS5 MATCH expression: every token double-quoted (tokens never contain quotes). */
export function toFts5Query(q: ParsedSearch): string {
  const term = (t: SearchTerm, prefix: boolean): string =>
    `"${t.words.join(' ')}"${prefix && !t.phrase ? '*' : ''}`;
  const positive = q.all
    .map((alts) =>
      alts.length === 1
        ? term(alts[0] as SearchTerm, true)
        : `(${alts.map((t) => term(t, true)).join(' OR ')})`,
    )
    .join(' AND ');
  if (q.none.length === 0) return positive;
  return `(${positive})${q.none.map((t) => ` NOT ${term(t, false)}`).join('')}`;
}

/** A to_tsquery() expression: words are letters and digits only, so no operator can be smuggled in. */
export function toTsQuery(q: ParsedSearch): string {
  const term = (t: SearchTerm, prefix: boolean): string =>
    t.phrase ? `(${t.words.join(' <-> ')})` : `${t.words[0] as string}${prefix ? ':*' : ''}`;
  const parts = q.all.map((alts) => `(${alts.map((t) => term(t, true)).join(' | ')})`);
  for (const t of q.none) parts.push(`!${term(t, false)}`);
  return parts.join(' & ');
}

// ---------------------------------------------------------------------------------------------------------
// Queries

/** A room the searcher has been in, searched up to stream position `until` (their leave, if they left). */
export interface SearchRoom {
  roomNid: number;
  until: number;
}

export interface SearchQuery {
  parsed: ParsedSearch;
  rooms: readonly SearchRoom[];
  types: readonly string[];
  senders?: readonly string[];
  notSenders?: readonly string[];
  containsUrl?: boolean;
  order: 'rank' | 'recent';
  /** recent: only events with a stream ordering below this. */
  beforeStream?: number;
  /** rank: how many results to skip. */
  offset?: number;
  limit: number;
  /** Also count every match (ignoring paging). */
  withCount?: boolean;
}

export interface SearchHit {
  eventNid: number;
  roomNid: number;
  streamOrdering: number;
  rank: number;
  value: string;
}

interface FtsParts {
  /** The index joined to `events e`. */
  from: RawBuilder<unknown>;
  match: RawBuilder<unknown>;
  rank: RawBuilder<unknown>;
  value: RawBuilder<unknown>;
}

/** FTS5: rowid is the event_nid; bm25() is lower for better matches. */
function sqliteFts(q: ParsedSearch): FtsParts {
  return {
    from: sql`event_search JOIN events e ON e.event_nid = event_search.rowid`,
    match: sql`event_search MATCH ${toFts5Query(q)}`,
    rank: sql`-bm25(event_search)`,
    value: sql`event_search.value`,
  };
}

/** PostgreSQL: the generated tsvector against to_tsquery('english'), the configuration of the index. */
function postgresFts(q: ParsedSearch): FtsParts {
  return {
    from: sql`event_search s CROSS JOIN to_tsquery('english', ${toTsQuery(q)}) AS q (query)
      JOIN events e ON e.event_nid = s.event_nid`,
    match: sql`s.vector @@ q.query`,
    rank: sql`ts_rank(s.vector, q.query)`,
    value: sql`s.value`,
  };
}

function conditions(q: SearchQuery, fts: FtsParts, paged: boolean): RawBuilder<unknown> {
  const c: RawBuilder<unknown>[] = [
    fts.match,
    sql`e.redacted_by IS NULL`,
    sql`e.outlier = 0`,
    sql`e.type IN (${sql.join(q.types)})`,
  ];
  if (q.senders) c.push(sql`e.sender IN (${sql.join(q.senders)})`);
  if (q.notSenders?.length) c.push(sql`e.sender NOT IN (${sql.join(q.notSenders)})`);
  if (q.containsUrl !== undefined) c.push(sql`e.contains_url = ${q.containsUrl ? 1 : 0}`);
  if (paged && q.beforeStream !== undefined) c.push(sql`e.stream_ordering < ${q.beforeStream}`);
  return sql.join(c, sql` AND `);
}

/** The rooms as a table `vis`; the casts give PostgreSQL the column types of untyped parameters. */
function searchRooms(rooms: readonly SearchRoom[]): RawBuilder<unknown> {
  const rows = rooms.map((r) => sql`(CAST(${r.roomNid} AS bigint), CAST(${r.until} AS bigint))`);
  return sql`WITH vis (room_nid, until) AS (VALUES ${sql.join(rows)})`;
}

function isEmpty(q: SearchQuery): boolean {
  return q.parsed.all.length === 0 || q.rooms.length === 0 || q.types.length === 0 || q.senders?.length === 0;
}

/** One page of matches, best (rank) or newest (recent) first, and the total number of matches. */
export async function searchEvents(
  db: Executor,
  engine: Engine,
  q: SearchQuery,
): Promise<{ hits: SearchHit[]; count?: number }> {
  if (isEmpty(q)) return { hits: [], count: 0 };
  const fts = engine === 'sqlite' ? sqliteFts(q.parsed) : postgresFts(q.parsed);
  const order = q.order === 'rank' ? sql`rank DESC, e.stream_ordering DESC` : sql`e.stream_ordering DESC`;
  const page = await sql<{
    event_nid: number;
    room_nid: number;
    stream_ordering: number;
    rank: number;
    value: string;
  }>`${searchRooms(q.rooms)}
    SELECT e.event_nid AS event_nid, e.room_nid AS room_nid, e.stream_ordering AS stream_ordering,
      ${fts.rank} AS rank, ${fts.value} AS value
    FROM ${fts.from}
    JOIN vis v ON v.room_nid = e.room_nid AND e.stream_ordering <= v.until
    WHERE ${conditions(q, fts, true)}
    ORDER BY ${order}
    LIMIT ${q.limit} OFFSET ${q.order === 'rank' ? (q.offset ?? 0) : 0}`.execute(db);
  const hits = page.rows.map((r) => ({
    eventNid: Number(r.event_nid),
    roomNid: Number(r.room_nid),
    streamOrdering: Number(r.stream_ordering),
    rank: Number(r.rank),
    value: r.value,
  }));
  if (!q.withCount) return { hits };
  const total = await sql<{ n: number | string }>`${searchRooms(q.rooms)}
    SELECT COUNT(*) AS n
    FROM ${fts.from}
    JOIN vis v ON v.room_nid = e.room_nid AND e.stream_ordering <= v.until
    WHERE ${conditions(q, fts, false)}`.execute(db);
  return { hits, count: Number(total.rows[0]?.n ?? 0) };
}

// ---------------------------------------------------------------------------------------------------------
// Rooms, context and state

export interface MembershipRow {
  roomNid: number;
  roomId: string;
  membership: string;
  eventNid: number;
  streamOrdering: number;
}

/** The rooms `userId` is or was in (joined, left or banned, not forgotten), with their current membership. */
export async function roomsBeenIn(db: Executor, userId: string): Promise<MembershipRow[]> {
  const rows = await db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .select(['m.room_nid', 'r.room_id', 'm.membership', 'm.event_nid', 'm.stream_ordering'])
    .where('m.user_id', '=', userId)
    .where('m.membership', 'in', ['join', 'leave', 'ban'])
    .where('m.forgotten', '=', 0)
    .execute();
  return rows.map((r) => ({
    roomNid: Number(r.room_nid),
    roomId: r.room_id,
    membership: r.membership,
    eventNid: Number(r.event_nid),
    streamOrdering: Number(r.stream_ordering),
  }));
}

/** Events of a room just before (newest first) or after (oldest first) a stream position, up to `until`. */
export async function contextEventNids(
  db: Executor,
  roomNid: number,
  around: number,
  dir: 'before' | 'after',
  limit: number,
  until: number,
): Promise<number[]> {
  if (limit <= 0) return [];
  let q = db
    .selectFrom('events')
    .select('event_nid')
    .where('room_nid', '=', roomNid)
    .where('outlier', '=', 0)
    .where('stream_ordering', '<=', until);
  q =
    dir === 'before'
      ? q.where('stream_ordering', '<', around).orderBy('stream_ordering', 'desc')
      : q.where('stream_ordering', '>', around).orderBy('stream_ordering', 'asc');
  const rows = await q.limit(limit).execute();
  return rows.map((r) => Number(r.event_nid));
}

/** The current state snapshot of each room. */
export async function currentSnapshots(
  db: Executor,
  roomNids: readonly number[],
): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  if (roomNids.length === 0) return out;
  const rows = await db
    .selectFrom('rooms')
    .select(['room_nid', 'current_snapshot_nid'])
    .where('room_nid', 'in', [...roomNids])
    .execute();
  for (const r of rows)
    if (r.current_snapshot_nid !== null) out.set(Number(r.room_nid), Number(r.current_snapshot_nid));
  return out;
}
