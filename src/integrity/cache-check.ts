/**
 * Online only: compares what the caches hold with the database, on a random sample. Caches hold immutable facts
 * read after commit, so any difference is damage (or a bug): it is reported, counted, and the caches are cleared.
 */
import { sql } from 'kysely';
import type { RoomWriter } from '../input/room-writer.js';
import type { EventReader } from '../read/event-reader.js';
import type { Storage } from '../storage/db.js';
import { loadSnapshot, stateKey } from '../storage/state.js';
import type { Problem } from './problems.js';

export interface CacheDeps {
  storage: Storage;
  reader: EventReader;
  writer: RoomWriter;
}

export async function sampleCaches(deps: CacheDeps, sampleSize = 200): Promise<Problem[]> {
  const db = deps.storage.db;
  const problems: Problem[] = [];
  const events = await sql<{ event_nid: number; event_id: string; json: string; redacted_by: string | null }>`
    SELECT event_nid, event_id, json, redacted_by FROM events ORDER BY random() LIMIT ${sampleSize}`.execute(
    db,
  );
  for (const r of events.rows) {
    const cached = deps.reader.events.get(Number(r.event_nid));
    if (!cached) continue;
    let same = cached.eventId === r.event_id && cached.redactedBy === r.redacted_by;
    try {
      same &&= JSON.stringify(cached.pdu) === JSON.stringify(JSON.parse(r.json));
    } catch {
      same = false;
    }
    if (!same) {
      problems.push({
        kind: 'cache_mismatch',
        roomId: cached.roomId,
        eventId: cached.eventId,
        detail: `cached event ${Number(r.event_nid)} differs from the database`,
      });
    }
  }
  const snaps = await sql<{ snapshot_nid: number }>`
    SELECT snapshot_nid FROM state_snapshots ORDER BY random() LIMIT ${sampleSize}`.execute(db);
  for (const s of snaps.rows) {
    const cached = deps.reader.snapshots.get(Number(s.snapshot_nid));
    if (!cached) continue;
    const loaded = await loadSnapshot(db, Number(s.snapshot_nid));
    const same =
      loaded !== undefined &&
      loaded.map.size === cached.size &&
      [...cached].every(([k, v]) => loaded.map.get(k) === v);
    if (!same) {
      problems.push({
        kind: 'cache_mismatch',
        roomId: null,
        eventId: null,
        detail: `cached state snapshot ${Number(s.snapshot_nid)} differs from the database`,
      });
    }
  }
  const rooms = await sql<{ room_id: string; room_nid: number }>`
    SELECT room_id, room_nid FROM rooms ORDER BY random() LIMIT ${Math.ceil(sampleSize / 10)}`.execute(db);
  for (const room of rooms.rows) {
    await deps.writer.runExclusive(room.room_id, async () => {
      const head = await deps.writer.head(room.room_id);
      if (!head) return;
      const rows = await db
        .selectFrom('current_state')
        .select(['type', 'state_key', 'event_nid'])
        .where('room_nid', '=', Number(room.room_nid))
        .execute();
      const same =
        rows.length === head.state.size &&
        rows.every((c) => head.state.get(stateKey(c.type, c.state_key))?.eventNid === Number(c.event_nid));
      if (!same) {
        problems.push({
          kind: 'cache_mismatch',
          roomId: room.room_id,
          eventId: null,
          detail: 'the writer’s cached room head differs from current_state',
        });
      }
    });
  }
  return problems;
}
