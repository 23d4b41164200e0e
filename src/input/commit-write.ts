/**
 * The SQL of one room's part of a writer transaction (room-writer.ts): the event rows with their JSON, graph edges,
 * state snapshots, current state, memberships, relations, redaction marks, the search index, client transaction
 * ids, then the room's forward extremity and current snapshot. Also the in-memory head arithmetic the writer
 * shares with it.
 */
import type { Insertable, Transaction } from 'kysely';
import { canonicalJson } from '../rooms/canonical-json.js';
import type { JsonObject, Pdu } from '../rooms/event.js';
import { injectFault } from '../integrity/faults.js';
import type { Engine } from '../storage/dialect.js';
import { insertEvent, insertEventEdges, moveExtremities } from '../storage/events.js';
import { fitsOneStatement, writePgGroupRows, type PgGroupRows } from '../storage/group-rows-pg.js';
import { indexEventForSearch, insertSearchRows, type SearchRow } from '../storage/search.js';
import type { Database, EventTxnIdsTable } from '../storage/schema.js';
import { insertSnapshot, MAX_CHAIN, stateKey } from '../storage/state.js';
import { referenceHashOf, type RoomHead, type StateEntry } from './room-head.js';

export interface TxnKey {
  userId: string;
  deviceId: string;
  txnId: string;
}

export interface Prepared {
  /** As stored: in room versions 1 and 2 the wire form, whose `prev_events`/`auth_events` are `[id, hashes]`. */
  pdu: Pdu;
  eventId: string;
  prevIds: string[];
  authIds: string[];
  /** The client transaction id recorded with this event. */
  txn?: TxnKey | undefined;
}

export interface PersistedEvent {
  eventId: string;
  eventNid: number;
  streamOrdering: number;
  roomId: string;
  pdu: Pdu;
  /**
   * The rest of the row as written, when the writer knows it (local events): the reader caches the event from it,
   * parsed from the very JSON text stored.
   */
  stored?: { roomNid: number; roomVersion: string; stateSnapshotNid: number; json: string };
}

/** Where a write is, so a failure can be blamed on one event: `event` is the index in the room's `prepared`. */
export interface WriteCursor {
  event: number;
}

/**
 * Writes `prepared` (events of one room, built in order over `head`) at `positions` inside `trx`; with `newRoom`,
 * creates the room row first. Returns the head after them and the persisted events. `cursor.event` follows the event
 * being written; the room's own rows written after the events count as the last event's.
 */
export async function writeRoomEvents(
  trx: Transaction<Database>,
  engine: Engine,
  head: RoomHead,
  prepared: readonly Prepared[],
  positions: readonly number[],
  cursor: WriteCursor,
  newRoom?: { creator: string; createdTs: number },
  deferred?: GroupRows,
): Promise<{ newHead: RoomHead; persisted: PersistedEvent[] }> {
  let roomNid = head.roomNid;
  let snapshot = head.snapshot;
  if (newRoom) {
    cursor.event = 0;
    const row = await trx
      .insertInto('rooms')
      .values({
        room_id: head.roomId,
        room_version: head.version.id,
        creator: newRoom.creator,
        created_ts: newRoom.createdTs,
        is_public: 0,
        current_snapshot_nid: null,
      })
      .returning('room_nid')
      .executeTakeFirstOrThrow();
    roomNid = Number(row.room_nid);
    snapshot = await insertSnapshot(trx, roomNid, null, new Map());
  }
  let working: RoomHead = { ...cloneHead(head), roomNid, snapshot };
  const persisted: PersistedEvent[] = [];
  const rows: GroupRows = deferred ?? { edges: [], txns: [], search: [], moves: [] };
  const { edges, txns } = rows;
  for (const [i, p] of prepared.entries()) {
    cursor.event = i;
    const pos = positions[i] as number;
    const stateSnapshotNid = working.snapshot.nid;
    const json = canonicalJson(p.pdu);
    const eventNid = await insertEvent(
      trx,
      {
        eventId: p.eventId,
        roomNid,
        type: p.pdu.type,
        stateKey: p.pdu.state_key ?? null,
        sender: p.pdu.sender,
        depth: p.pdu.depth,
        originServerTs: p.pdu.origin_server_ts,
        streamOrdering: pos,
        json,
        stateSnapshotNid,
        containsUrl: typeof p.pdu.content.url === 'string',
      },
      [],
      [],
    );
    edges.push({ eventNid, prevIds: p.prevIds, authIds: p.authIds });
    if (p.pdu.state_key !== undefined) {
      working = await writeState(trx, working, p, eventNid, pos);
    } else {
      working = applyToHead(working, p.pdu, p.eventId, eventNid);
    }
    await injectFault('persist-event', trx);
    await writeSideTables(trx, engine, p, eventNid, roomNid, true, rows.search);
    if (p.txn) {
      txns.push({
        user_id: p.txn.userId,
        device_id: p.txn.deviceId,
        txn_id: p.txn.txnId,
        event_nid: eventNid,
        created_ts: Date.now(),
      });
    }
    persisted.push({
      eventId: p.eventId,
      eventNid,
      streamOrdering: pos,
      roomId: head.roomId,
      pdu: p.pdu,
      stored: { roomNid, roomVersion: head.version.id, stateSnapshotNid, json },
    });
  }
  const last = persisted[persisted.length - 1];
  // One extremity before (the usual case): its row is moved with the group's other rooms' (writeGroupRows).
  const move = last !== undefined && !newRoom && head.extremities.length === 1;
  if (last && move) rows.moves.push({ roomNid, eventNid: last.eventNid });
  if (!deferred) await writeGroupRows(trx, engine, rows);
  if (last) {
    // Otherwise replace them all.
    if (!move) {
      await trx.deleteFrom('forward_extremities').where('room_nid', '=', roomNid).execute();
      await trx
        .insertInto('forward_extremities')
        .values({ room_nid: roomNid, event_nid: last.eventNid })
        .execute();
    }
    working.extremities = [
      {
        eventId: last.eventId,
        eventNid: last.eventNid,
        depth: last.pdu.depth,
        refHash: referenceHashOf(last.pdu, working.version),
      },
    ];
  }
  // Messages leave the snapshot as it was: the row already says so.
  if (newRoom || working.snapshot.nid !== head.snapshot.nid) {
    await trx
      .updateTable('rooms')
      .set({ current_snapshot_nid: working.snapshot.nid })
      .where('room_nid', '=', roomNid)
      .execute();
  }
  return { newHead: working, persisted };
}

/** Rows of several events (of one room or a whole group) written together, after the events. */
export interface GroupRows {
  edges: { eventNid: number; prevIds: string[]; authIds: string[] }[];
  txns: Insertable<EventTxnIdsTable>[];
  /** Search rows (a redaction writes the ones before it first: it may remove one of them). */
  search: SearchRow[];
  /** Rooms whose one forward extremity moves to their last event. */
  moves: { roomNid: number; eventNid: number }[];
}

/**
 * The graph edges and transaction ids of many events in a few multi-row inserts (the events cite each other: all
 * are written by now); on PostgreSQL in one statement. The group commit answers a repeated transaction id before writing: none of these collide.
 */
export async function writeGroupRows(
  trx: Transaction<Database>,
  engine: Engine,
  rows: GroupRows,
): Promise<void> {
  if (engine === 'postgres') {
    const pg: PgGroupRows = {
      prev: rows.edges.flatMap((e) =>
        [...new Set(e.prevIds)].map((prev_event_id) => ({ event_nid: e.eventNid, prev_event_id })),
      ),
      auth: rows.edges.flatMap((e) =>
        [...new Set(e.authIds)].map((auth_event_id) => ({ event_nid: e.eventNid, auth_event_id })),
      ),
      search: rows.search,
      txns: rows.txns,
      moves: rows.moves,
    };
    // One round trip instead of five (group-rows-pg.ts).
    if (fitsOneStatement(pg)) return writePgGroupRows(trx, pg);
  }
  await insertEventEdges(trx, rows.edges);
  await insertSearchRows(trx, engine, rows.search);
  await moveExtremities(trx, rows.moves);
  for (let i = 0; i < rows.txns.length; i += 500) {
    await trx
      .insertInto('event_txn_ids')
      .values(rows.txns.slice(i, i + 500))
      .execute();
  }
}

/** A state event: a new snapshot (delta, or full when the chain is long), current state and memberships. */
async function writeState(
  trx: Transaction<Database>,
  working: RoomHead,
  p: Prepared,
  eventNid: number,
  pos: number,
): Promise<RoomHead> {
  const { pdu } = p;
  const key = stateKey(pdu.type, pdu.state_key as string);
  const next = applyToHead(working, pdu, p.eventId, eventNid);
  let entries: Map<string, number>;
  let parent: { nid: number; chainLen: number } | null;
  if (working.snapshot.chainLen + 1 > MAX_CHAIN) {
    entries = new Map([...next.state].map(([k, e]) => [k, e.eventNid]));
    parent = null;
  } else {
    entries = new Map([[key, eventNid]]);
    parent = working.snapshot;
  }
  next.snapshot = await insertSnapshot(trx, working.roomNid, parent, entries);
  await trx
    .insertInto('current_state')
    .values({
      room_nid: working.roomNid,
      type: pdu.type,
      state_key: pdu.state_key as string,
      event_nid: eventNid,
    })
    .onConflict((oc) => oc.columns(['room_nid', 'type', 'state_key']).doUpdateSet({ event_nid: eventNid }))
    .execute();
  if (pdu.type === 'm.room.member') {
    const membership = typeof pdu.content.membership === 'string' ? pdu.content.membership : 'leave';
    // A join of another server's user is noted by the writer (RoomWriter#noteRemoteJoins) for the fan-out.
    await trx
      .insertInto('room_members')
      .values({
        room_nid: working.roomNid,
        user_id: pdu.state_key as string,
        membership,
        event_nid: eventNid,
        stream_ordering: pos,
        forgotten: 0,
      })
      .onConflict((oc) =>
        oc
          .columns(['room_nid', 'user_id'])
          .doUpdateSet({ membership, event_nid: eventNid, stream_ordering: pos, forgotten: 0 }),
      )
      .execute();
  }
  return next;
}

/**
 * Relations, redaction targets (unless `applyRedaction` is false) and the search index, written with the event (its
 * search row into `deferredSearch` when given, written with the group's other rows).
 */
export async function writeSideTables(
  trx: Transaction<Database>,
  engine: Engine,
  p: Prepared,
  eventNid: number,
  roomNid: number,
  applyRedaction = true,
  deferredSearch?: SearchRow[],
): Promise<void> {
  const rel = p.pdu.content['m.relates_to'];
  if (rel && typeof rel === 'object' && !Array.isArray(rel)) {
    const r = rel as JsonObject;
    if (typeof r.rel_type === 'string' && typeof r.event_id === 'string') {
      await trx
        .insertInto('event_relations')
        .values({
          event_nid: eventNid,
          relates_to_id: r.event_id,
          rel_type: r.rel_type,
          aggregation_key: typeof r.key === 'string' ? r.key : null,
        })
        .execute();
    }
  }
  if (p.pdu.type === 'm.room.redaction' && applyRedaction) {
    const target = typeof p.pdu.redacts === 'string' ? p.pdu.redacts : p.pdu.content.redacts;
    if (typeof target === 'string') {
      await trx
        .updateTable('events')
        .set({ redacted_by: p.eventId })
        .where('event_id', '=', target)
        .where('room_nid', '=', roomNid)
        .where('redacted_by', 'is', null)
        .execute();
    }
  }
  await indexEventForSearch(trx, engine, p.pdu, eventNid, roomNid, deferredSearch);
}

export function cloneHead(h: RoomHead): RoomHead {
  return { ...h, state: new Map(h.state), extremities: [...h.extremities] };
}

/** The head after `pdu` (state updated, single extremity). Does not touch `head`. */
export function applyToHead(head: RoomHead, pdu: Pdu, eventId: string, eventNid = 0): RoomHead {
  // A head's state map is never changed in place: a message shares it, a state event gets a copy.
  const next = pdu.state_key !== undefined ? cloneHead(head) : { ...head };
  if (pdu.state_key !== undefined) {
    const entry: StateEntry = { eventNid, eventId, pdu };
    next.state.set(stateKey(pdu.type, pdu.state_key), entry);
  }
  next.extremities = [{ eventId, eventNid, depth: pdu.depth, refHash: referenceHashOf(pdu, head.version) }];
  return next;
}
