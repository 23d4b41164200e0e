/**
 * Reading events for clients. Every read goes through here so that damage is handled in one place: a row whose
 * JSON is missing or does not parse is skipped, reported (logged once, counted, recorded for the doctor) and the
 * rest is served. Parsed events are cached by event_nid: the JSON of an event never changes; only `redacted_by`
 * does, and the cache entry is dropped when a redaction commits.
 */
import type { ClientEvent, JsonObject, Pdu } from '../rooms/event.js';
import { toClientEvent } from '../rooms/event.js';
import { redact } from '../rooms/redaction.js';
import { findRoomVersion } from '../rooms/room-versions.js';
import { LruCache } from '../cache/lru.js';
import type { DamageReporter } from '../integrity/damage.js';
import type { Storage } from '../storage/db.js';
import { loadSnapshot, loadSnapshots, type StateMapNids } from '../storage/state.js';

export interface LoadedEvent {
  nid: number;
  roomNid: number;
  eventId: string;
  roomId: string;
  roomVersion: string;
  pdu: Pdu;
  streamOrdering: number | null;
  stateSnapshotNid: number | null;
  redactedBy: string | null;
}

/** An events row joined with its room, as read (and as the writer committed it). */
export interface Row {
  event_nid: number;
  room_nid: number;
  event_id: string;
  json: string;
  stream_ordering: number | null;
  state_snapshot_nid: number | null;
  redacted_by: string | null;
  room_id: string;
  room_version: string;
}

export class EventReader {
  readonly events = new LruCache<number, LoadedEvent>('events', 50_000);
  readonly snapshots = new LruCache<number, StateMapNids>('state_snapshots', 2_000_000, (m) => m.size);
  #nidById = new LruCache<string, number>('event_ids', 100_000);

  constructor(
    private readonly storage: Storage,
    readonly damage: DamageReporter,
  ) {}

  #parse(r: Row): LoadedEvent | undefined {
    let pdu: Pdu;
    try {
      const parsed: unknown = JSON.parse(r.json);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not an object');
      pdu = parsed as Pdu;
      if (typeof pdu.type !== 'string' || typeof pdu.content !== 'object' || pdu.content === null) {
        throw new Error('missing type or content');
      }
    } catch (err) {
      this.damage.report({
        kind: 'event_json_unparsable',
        roomId: r.room_id,
        eventId: r.event_id,
        detail: `event JSON is unreadable (${(err as Error).message})`,
      });
      return undefined;
    }
    return {
      nid: Number(r.event_nid),
      roomNid: Number(r.room_nid),
      eventId: r.event_id,
      roomId: r.room_id,
      roomVersion: r.room_version,
      pdu,
      streamOrdering: r.stream_ordering === null ? null : Number(r.stream_ordering),
      stateSnapshotNid: r.state_snapshot_nid === null ? null : Number(r.state_snapshot_nid),
      redactedBy: r.redacted_by,
    };
  }

  #select() {
    return (
      this.storage.db
        .selectFrom('events as e')
        .innerJoin('rooms as r', 'r.room_nid', 'e.room_nid')
        .select([
          'e.event_nid',
          'e.room_nid',
          'e.event_id',
          'e.json',
          'e.stream_ordering',
          'e.state_snapshot_nid',
          'e.redacted_by',
          'r.room_id',
          'r.room_version',
        ])
        // Rejected and soft-failed events (received over federation) are never shown to clients.
        .where('e.rejected_reason', 'is', null)
        .where('e.soft_failed', '=', 0)
    );
  }

  /** Events by nid; damaged or missing ones are absent from the map (and reported). */
  async byNids(nids: readonly number[]): Promise<Map<number, LoadedEvent>> {
    const out = new Map<number, LoadedEvent>();
    const missing: number[] = [];
    for (const nid of nids) {
      const hit = this.events.get(nid);
      if (hit) out.set(nid, hit);
      else missing.push(nid);
    }
    for (let i = 0; i < missing.length; i += 500) {
      const rows = (await this.#select()
        .where('e.event_nid', 'in', missing.slice(i, i + 500))
        .execute()) as Row[];
      for (const r of rows) {
        const ev = this.#parse(r);
        if (!ev) continue;
        this.events.set(ev.nid, ev);
        out.set(ev.nid, ev);
      }
    }
    return out;
  }

  /** Events in the order of `nids`, skipping damaged ones. */
  async listByNids(nids: readonly number[]): Promise<LoadedEvent[]> {
    const map = await this.byNids(nids);
    const out: LoadedEvent[] = [];
    for (const nid of nids) {
      const ev = map.get(nid);
      if (ev) out.push(ev);
    }
    return out;
  }

  async byId(eventId: string): Promise<LoadedEvent | undefined> {
    const nid = this.#nidById.get(eventId);
    if (nid !== undefined) {
      const hit = this.events.get(nid);
      if (hit) return hit;
    }
    const row = (await this.#select().where('e.event_id', '=', eventId).executeTakeFirst()) as
      Row | undefined;
    if (!row) return undefined;
    const ev = this.#parse(row);
    if (!ev) return undefined;
    this.events.set(ev.nid, ev);
    this.#nidById.set(ev.eventId, ev.nid);
    return ev;
  }

  /**
   * The state map (key → event_nid) of a snapshot. A broken chain is reported and served with an earlier snapshot
   * standing in for the missing part (when the room is known); undefined only when nothing is readable.
   */
  async snapshot(
    snapshotNid: number,
    ctx: { roomId?: string; roomNid?: number; eventId?: string } = {},
  ): Promise<StateMapNids | undefined> {
    const hit = this.snapshots.get(snapshotNid);
    if (hit) return hit;
    let loaded = await loadSnapshot(this.storage.db, snapshotNid, ctx.roomNid);
    if ((!loaded || loaded.broken) && ctx.roomNid === undefined && ctx.roomId !== undefined) {
      // Damage: find the room so that an earlier snapshot can stand in for the missing part.
      const room = await this.storage.db
        .selectFrom('rooms')
        .select('room_nid')
        .where('room_id', '=', ctx.roomId)
        .executeTakeFirst();
      if (room) loaded = await loadSnapshot(this.storage.db, snapshotNid, Number(room.room_nid));
    }
    if (!loaded || loaded.broken) {
      this.damage.report({
        kind: 'state_snapshot_missing',
        roomId: ctx.roomId,
        eventId: ctx.eventId,
        detail: loaded
          ? `state snapshot ${snapshotNid} has a broken chain; an earlier snapshot stood in for the missing part`
          : `state snapshot ${snapshotNid} is missing`,
      });
    }
    if (!loaded) return undefined;
    // A stand-in is not cached: once the doctor repairs the chain, the real state is read again.
    if (!loaded.broken) this.snapshots.set(snapshotNid, loaded.map);
    return loaded.map;
  }

  /**
   * Reads the snapshots not cached yet in a few statements and caches them (reading ahead for many rooms); a damaged
   * one is left for {@link snapshot} to read, stand in for and report.
   */
  async warmSnapshots(snapshotNids: readonly number[]): Promise<void> {
    const missing = snapshotNids.filter((nid) => this.snapshots.get(nid) === undefined);
    if (missing.length === 0) return;
    for (const [nid, map] of await loadSnapshots(this.storage.db, missing)) this.snapshots.set(nid, map);
  }

  /** The state events of a snapshot; entries pointing at missing or damaged events are skipped (reported). */
  async stateEvents(map: StateMapNids, roomId: string): Promise<Map<string, LoadedEvent>> {
    const events = await this.byNids([...map.values()]);
    const out = new Map<string, LoadedEvent>();
    for (const [k, nid] of map) {
      const ev = events.get(nid);
      if (ev) out.set(k, ev);
      else {
        this.damage.report({
          kind: 'state_entry_dangling',
          roomId,
          detail: `state entry ${k.replace('\u0000', '/')} points at event ${nid}, which is missing or unreadable`,
        });
      }
    }
    return out;
  }

  /**
   * Caches an event just committed (from the writer's commit listener, with the row it wrote), so the long-polls it
   * wakes do not read it back. Only a committed row is ever remembered, as with any other read.
   */
  remember(row: Row): void {
    // Parsed like any row read back (key order included); an unreadable one is reported, never thrown.
    const ev = this.#parse(row);
    if (!ev) return;
    this.events.set(ev.nid, ev);
    this.#nidById.set(ev.eventId, ev.nid);
  }

  /** Drops cached copies after a commit changed them (a redaction sets redacted_by on its target). */
  invalidateById(eventId: string): void {
    const nid = this.#nidById.get(eventId);
    if (nid !== undefined) this.events.delete(nid);
    else this.events.clear();
  }
}

export interface ClientEventOptions {
  now?: number;
  /** Events that redact others, to put in unsigned.redacted_because. */
  redactions?: ReadonlyMap<string, LoadedEvent>;
  /** event_nid → transaction id, for events the requesting device sent. */
  txnIds?: ReadonlyMap<number, string>;
}

/** The client format of an event, redacted when a redaction applies, with age and transaction_id in unsigned. */
export function clientEvent(ev: LoadedEvent, opts: ClientEventOptions = {}): ClientEvent {
  let pdu = ev.pdu;
  const unsigned: JsonObject = {};
  if (ev.redactedBy) {
    const version = findRoomVersion(ev.roomVersion);
    if (version) pdu = redact(pdu, version) as unknown as Pdu;
    const because = opts.redactions?.get(ev.redactedBy);
    unsigned.redacted_because = because
      ? toClientEvent(because.pdu, because.eventId)
      : { event_id: ev.redactedBy };
  }
  const out = toClientEvent({ ...pdu, unsigned: undefined }, ev.eventId);
  delete out.unsigned;
  unsigned.age = Math.max(0, (opts.now ?? Date.now()) - ev.pdu.origin_server_ts);
  const txn = opts.txnIds?.get(ev.nid);
  if (txn !== undefined) unsigned.transaction_id = txn;
  if (ev.pdu.unsigned && typeof ev.pdu.unsigned === 'object') {
    for (const [k, v] of Object.entries(ev.pdu.unsigned)) if (!(k in unsigned)) unsigned[k] = v;
  }
  out.unsigned = unsigned;
  return out;
}
