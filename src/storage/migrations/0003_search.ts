import { sql } from 'kysely';
import type { Migration } from './types.js';

/**
 * Full-text search over room events (client-server API "Server Side Search"): one row per searchable event,
 * keyed by event_nid.
 *
 * SQLite: an FTS5 table whose rowid is the event_nid, ranked with bm25(). PostgreSQL: a table with a generated
 * tsvector and a GIN index, ranked with ts_rank(); its key references the event so that deleting an event
 * drops its row (an FTS5 table cannot carry a foreign key: readers inner-join events, so an orphan row is inert).
 *
 * Existing events are indexed here, in batches; rows whose JSON does not parse are skipped (the doctor reports
 * them).
 */
export const m0003: Migration = {
  version: 3,
  name: 'search',
  async up(db, engine) {
    if (engine === 'sqlite') {
      await sql`CREATE VIRTUAL TABLE event_search USING fts5(
        value, room_nid UNINDEXED, key UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2'
      )`.execute(db);
    } else {
      await sql`CREATE TABLE event_search (
        event_nid bigint PRIMARY KEY REFERENCES events (event_nid) ON DELETE CASCADE,
        room_nid bigint NOT NULL,
        key text NOT NULL,
        value text NOT NULL,
        vector tsvector GENERATED ALWAYS AS (to_tsvector('english', value)) STORED
      )`.execute(db);
      await sql`CREATE INDEX event_search_vector_idx ON event_search USING GIN (vector)`.execute(db);
    }

    let after = 0;
    for (;;) {
      const rows = (await db
        .selectFrom('events')
        .select(['event_nid', 'room_nid', 'type', 'json'])
        .where('event_nid', '>', after)
        .where('type', 'in', ['m.room.message', 'm.room.name', 'm.room.topic'])
        .where('redacted_by', 'is', null)
        .where('outlier', '=', 0)
        .orderBy('event_nid')
        .limit(500)
        .execute()) as {
        event_nid: number | string;
        room_nid: number | string;
        type: string;
        json: string;
      }[];
      const last = rows.at(-1);
      if (!last) break;
      after = Number(last.event_nid);
      for (const r of rows) {
        const entry = searchableText(r.type, r.json);
        if (!entry) continue;
        const nid = Number(r.event_nid);
        const roomNid = Number(r.room_nid);
        if (engine === 'sqlite') {
          await sql`INSERT INTO event_search (rowid, value, room_nid, key)
            VALUES (${nid}, ${entry.value}, ${roomNid}, ${entry.key})`.execute(db);
        } else {
          await sql`INSERT INTO event_search (event_nid, room_nid, key, value)
            VALUES (${nid}, ${roomNid}, ${entry.key}, ${entry.value})`.execute(db);
        }
      }
    }
  },
};

/** Frozen copy of the indexing rule of src/storage/search.ts at the time of this migration. */
function searchableText(type: string, json: string): { key: string; value: string } | undefined {
  let content: Record<string, unknown>;
  try {
    const parsed = JSON.parse(json) as { content?: unknown };
    if (typeof parsed.content !== 'object' || parsed.content === null) return undefined;
    content = parsed.content as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const field = type === 'm.room.message' ? 'body' : type === 'm.room.name' ? 'name' : 'topic';
  let value = typeof content[field] === 'string' ? content[field] : '';
  if (type === 'm.room.topic') {
    const block = content['m.topic'] as { 'm.text'?: unknown } | null | undefined;
    const texts = typeof block === 'object' && block !== null ? block['m.text'] : undefined;
    if (Array.isArray(texts)) {
      for (const t of texts as unknown[]) {
        const rep = t as { mimetype?: unknown; body?: unknown } | null;
        if (rep && typeof rep.body === 'string' && (rep.mimetype ?? 'text/plain') === 'text/plain') {
          if (rep.body !== value) value = value ? `${value}\n${rep.body}` : rep.body;
          break;
        }
      }
    }
  }
  return value.trim() ? { key: `content.${field}`, value } : undefined;
}
