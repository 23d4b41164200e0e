/**
 * The per-room checks of `hearth doctor`. A room is read whole (events, edges, snapshots, read models) and its
 * events are replayed in stream order through the state rules of a locally-linear room: the state before each
 * event is the state before the previous one plus the previous one when it is a state event. Every stored fact
 * derived from the graph is compared with the replay.
 */
import { canonicalJson } from '../rooms/canonical-json.js';
import type { Pdu } from '../rooms/event.js';
import { redact } from '../rooms/redaction.js';
import { checkContentHash, computeEventId } from '../rooms/hashing.js';
import { findRoomVersion, type RoomVersion } from '../rooms/room-versions.js';
import type { Engine } from '../storage/dialect.js';
import type { EventRow } from '../storage/events.js';
import { knownAbsentEventIds } from '../storage/quarantine.js';
import type { Executor } from '../storage/users.js';
import { MAX_CHAIN, stateKey, type StateMapNids } from '../storage/state.js';
import type { Problem, ProblemKind } from './problems.js';

export interface RoomRef {
  nid: number;
  id: string;
  version: string;
  currentSnapshotNid: number | null;
}

export interface GoodEvent {
  row: EventRow;
  nid: number;
  pdu: Pdu;
}

export interface RoomAnalysis {
  room: RoomRef;
  problems: Problem[];
  /** Events to quarantine, with the reason. */
  bad: { row: EventRow; kind: ProblemKind; reason: string }[];
  /** Readable events in graph order (depth, then stream ordering; outliers included). */
  good: GoodEvent[];
  /** State after the last event. */
  finalState: StateMapNids;
  /** event_nids with no successor. */
  extremities: number[];
  /** Edges to events this server does not have and has not recorded as missing. */
  missingEdges: { eventId: string; referencedBy: string }[];
  /** Events whose event_edges / event_auth_edges rows differ from their JSON. */
  edgeRowsToRewrite: GoodEvent[];
}

interface SnapRow {
  parent: number | null;
  chainLen: number;
  entries: [string, number][];
}

const edgeId = (x: unknown): string | undefined =>
  typeof x === 'string' ? x : Array.isArray(x) && typeof x[0] === 'string' ? x[0] : undefined;

export function prevIds(pdu: Pdu): string[] {
  return (Array.isArray(pdu.prev_events) ? pdu.prev_events : []).map(edgeId).filter((x) => x !== undefined);
}
export function authIds(pdu: Pdu): string[] {
  return (Array.isArray(pdu.auth_events) ? pdu.auth_events : []).map(edgeId).filter((x) => x !== undefined);
}

/** Why an event's JSON cannot be trusted, or undefined when it is sound. */
export function checkEventJson(
  row: EventRow,
  version: RoomVersion | undefined,
): { kind: ProblemKind; reason: string } | { pdu: Pdu } {
  if (!row.json) return { kind: 'event_json_missing', reason: 'event JSON is missing (empty)' };
  let pdu: Pdu;
  try {
    const parsed: unknown = JSON.parse(row.json);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    pdu = parsed as Pdu;
    if (typeof pdu.type !== 'string') throw new Error('no type');
    if (typeof pdu.content !== 'object' || pdu.content === null) throw new Error('no content');
  } catch (err) {
    return { kind: 'event_json_unparsable', reason: `event JSON does not parse (${(err as Error).message})` };
  }
  if (version) {
    let id: string | undefined;
    try {
      id = version.eventIdFormat === 'v1' ? pdu.event_id : computeEventId(pdu, version);
    } catch {
      id = undefined;
    }
    if (id !== row.event_id) {
      return {
        kind: 'event_hash_mismatch',
        reason: `event JSON hashes to ${id ?? 'nothing'}, not its event id`,
      };
    }
  }
  // An event received with a content hash that did not match is stored redacted, as the spec requires.
  if (!checkContentHash(pdu) && !(version && isRedactedForm(pdu, version))) {
    return { kind: 'event_content_hash_mismatch', reason: 'content hash does not match the event content' };
  }
  return { pdu };
}

/** Whether the event is already in its redacted form (nothing the redaction algorithm would remove). */
function isRedactedForm(pdu: Pdu, version: RoomVersion): boolean {
  return canonicalJson(redact(pdu, version)) === canonicalJson(pdu);
}

function mapsEqual(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

function describeDiff(want: ReadonlyMap<string, number>, got: ReadonlyMap<string, number>): string {
  const diffs: string[] = [];
  for (const [k, v] of want)
    if (got.get(k) !== v) diffs.push(`${k.replace('\u0000', '/')}: ${got.get(k) ?? 'none'} != ${v}`);
  for (const [k, v] of got) if (!want.has(k)) diffs.push(`${k.replace('\u0000', '/')}: ${v} != none`);
  return `${diffs.length} differences (stored != replayed): ${diffs.slice(0, 3).join('; ')}${diffs.length > 3 ? '; ...' : ''}`;
}

/** Loads everything the checks need for one room. */
async function loadRoom(db: Executor, room: RoomRef) {
  const rows = await db
    .selectFrom('events')
    .selectAll()
    .where('room_nid', '=', room.nid)
    .orderBy('stream_ordering')
    .orderBy('event_nid')
    .execute();
  const edgeRows = await db
    .selectFrom('event_edges as x')
    .innerJoin('events as e', 'e.event_nid', 'x.event_nid')
    .select(['x.event_nid', 'x.prev_event_id as target'])
    .where('e.room_nid', '=', room.nid)
    .execute();
  const authRows = await db
    .selectFrom('event_auth_edges as x')
    .innerJoin('events as e', 'e.event_nid', 'x.event_nid')
    .select(['x.event_nid', 'x.auth_event_id as target'])
    .where('e.room_nid', '=', room.nid)
    .execute();
  const snaps = await db
    .selectFrom('state_snapshots')
    .select(['snapshot_nid', 'parent_nid', 'chain_len'])
    .where('room_nid', '=', room.nid)
    .execute();
  const entries = await db
    .selectFrom('state_snapshot_entries as x')
    .innerJoin('state_snapshots as s', 's.snapshot_nid', 'x.snapshot_nid')
    .select(['x.snapshot_nid', 'x.type', 'x.state_key', 'x.event_nid'])
    .where('s.room_nid', '=', room.nid)
    .execute();
  const current = await db.selectFrom('current_state').selectAll().where('room_nid', '=', room.nid).execute();
  const members = await db.selectFrom('room_members').selectAll().where('room_nid', '=', room.nid).execute();
  const fwd = await db
    .selectFrom('forward_extremities')
    .selectAll()
    .where('room_nid', '=', room.nid)
    .execute();
  const snapMap = new Map<number, SnapRow>();
  for (const s of snaps) {
    snapMap.set(Number(s.snapshot_nid), {
      parent: s.parent_nid === null ? null : Number(s.parent_nid),
      chainLen: Number(s.chain_len),
      entries: [],
    });
  }
  for (const e of entries) {
    snapMap.get(Number(e.snapshot_nid))?.entries.push([stateKey(e.type, e.state_key), Number(e.event_nid)]);
  }
  const edges = new Map<number, { prev: Set<string>; auth: Set<string> }>();
  const edgesOf = (nid: number) => {
    let e = edges.get(nid);
    if (!e) edges.set(nid, (e = { prev: new Set(), auth: new Set() }));
    return e;
  };
  for (const r of edgeRows) edgesOf(Number(r.event_nid)).prev.add(r.target);
  for (const r of authRows) edgesOf(Number(r.event_nid)).auth.add(r.target);
  return { rows, snapMap, edges, current, members, fwd };
}

/** Resolves snapshots in memory, detecting missing links, cycles, over-long chains and wrong chain lengths. */
class SnapshotResolver {
  #memo = new Map<number, { map: StateMapNids } | { kind: ProblemKind; why: string }>();
  constructor(private readonly snaps: Map<number, SnapRow>) {}

  resolve(nid: number): { map: StateMapNids } | { kind: ProblemKind; why: string } {
    const hit = this.#memo.get(nid);
    if (hit) return hit;
    const result = this.#walk(nid);
    if (this.#memo.size > 500) this.#memo.clear();
    this.#memo.set(nid, result);
    return result;
  }

  #walk(nid: number): { map: StateMapNids } | { kind: ProblemKind; why: string } {
    const chain: number[] = [];
    const seen = new Set<number>();
    let cur: number | null = nid;
    while (cur !== null) {
      if (seen.has(cur))
        return { kind: 'snapshot_chain_cycle', why: `snapshot chain of ${nid} loops at ${cur}` };
      const s = this.snaps.get(cur);
      if (!s) {
        return cur === nid
          ? { kind: 'snapshot_missing', why: `state snapshot ${nid} does not exist` }
          : { kind: 'snapshot_chain_broken', why: `state snapshot ${nid} has a missing ancestor ${cur}` };
      }
      seen.add(cur);
      chain.push(cur);
      if (chain.length > MAX_CHAIN + 1) {
        return {
          kind: 'snapshot_chain_too_long',
          why: `snapshot chain of ${nid} exceeds ${MAX_CHAIN + 1} links`,
        };
      }
      cur = s.parent;
    }
    const map: StateMapNids = new Map();
    for (let i = chain.length - 1; i >= 0; i--) {
      const s = this.snaps.get(chain[i] as number) as SnapRow;
      if (s.chainLen !== chain.length - 1 - i) {
        return {
          kind: 'snapshot_chain_broken',
          why: `snapshot ${chain[i]} records chain length ${s.chainLen}, but its chain has ${chain.length - 1 - i}`,
        };
      }
      for (const [k, v] of s.entries) map.set(k, v);
    }
    return { map };
  }
}

export async function analyzeRoom(db: Executor, _engine: Engine, room: RoomRef): Promise<RoomAnalysis> {
  const version = findRoomVersion(room.version);
  const data = await loadRoom(db, room);
  const problems: Problem[] = [];
  const add = (kind: ProblemKind, eventId: string | null, detail: string): void => {
    problems.push({ kind, roomId: room.id, eventId, detail });
  };
  const bad: RoomAnalysis['bad'] = [];
  const good: GoodEvent[] = [];
  for (const row of data.rows) {
    const res = checkEventJson(row, version);
    if ('pdu' in res) good.push({ row, nid: Number(row.event_nid), pdu: res.pdu });
    else {
      bad.push({ row, kind: res.kind, reason: res.reason });
      add(res.kind, row.event_id, res.reason);
    }
  }
  // Graph order: in a locally-linear room depth grows by one along the chain; stream order breaks ties.
  good.sort(
    (a, b) =>
      a.pdu.depth - b.pdu.depth ||
      (a.row.stream_ordering ?? Infinity) - (b.row.stream_ordering ?? Infinity) ||
      a.nid - b.nid,
  );
  const goodNids = new Set(good.map((g) => g.nid));
  const allIds = new Set(data.rows.map((r) => r.event_id));

  // Replay.
  const resolver = new SnapshotResolver(data.snapMap);
  const state: StateMapNids = new Map();
  let lastCompared: { snap: number; stateVersion: number } | undefined;
  let stateVersion = 0;
  const checkMap = (map: StateMapNids, eventId: string | null, what: string): boolean => {
    for (const [k, v] of map) {
      if (!goodNids.has(v)) {
        add(
          'snapshot_entry_dangling',
          eventId,
          `${what}: entry ${k.replace('\u0000', '/')} points at event ${v}, which is missing or damaged`,
        );
        return false;
      }
    }
    return true;
  };
  const referenced = new Set<string>();
  const edgeRowsToRewrite: GoodEvent[] = [];
  const missingEdges: RoomAnalysis['missingEdges'] = [];
  const unknownTargets = new Map<string, string>();
  let lastReplayed: string | undefined;
  // The create event arrived as an outlier (send_join), or was backfilled later (a negative position): the room was
  // joined over federation. A room known only through an invite over federation holds nothing but outliers (none
  // of their edges resolve) and no state.
  const inviteOnly = room.currentSnapshotNid === null && data.rows.every((r) => r.outlier === 1);
  const joinedRemotely = good.some(
    (g) =>
      (g.row.outlier === 1 || Number(g.row.stream_ordering) < 0) &&
      g.pdu.type === 'm.room.create' &&
      g.pdu.state_key === '',
  );
  for (const g of good) {
    const { row, pdu } = g;
    const prev = prevIds(pdu);
    const auth = authIds(pdu);
    const stored = data.edges.get(g.nid);
    const sameSet = (a: string[], b: Set<string> | undefined) =>
      new Set(a).size === (b?.size ?? 0) && a.every((x) => b?.has(x));
    if (!sameSet(prev, stored?.prev) || !sameSet(auth, stored?.auth)) {
      edgeRowsToRewrite.push(g);
      add('edge_rows_mismatch', row.event_id, 'stored prev/auth edge rows differ from the event JSON');
    }
    // In a room joined over federation the history before the join is not here: prev edges may point at events
    // this server never received (backward extremities). Auth edges must still resolve.
    for (const t of inviteOnly ? [] : joinedRemotely ? auth : [...prev, ...auth])
      if (!allIds.has(t) && !unknownTargets.has(t)) unknownTargets.set(t, row.event_id);
    if (row.outlier) continue;
    for (const p of prev) referenced.add(p);
    if (row.stream_ordering === null)
      add('stream_ordering_missing', row.event_id, 'event has no stream ordering');
    // Not the next event of a linear history (a fork, a merge, or the first event after a join over federation):
    // the state before it was resolved when it was written; the replay continues from its stored snapshot.
    const resync =
      prev.length > 1 ||
      (prev.length === 1 && allIds.has(prev[0] as string) && prev[0] !== lastReplayed) ||
      (prev.length === 1 && lastReplayed === undefined);
    lastReplayed = row.event_id;
    if (row.state_snapshot_nid === null) {
      add('snapshot_missing', row.event_id, 'event has no state snapshot');
    } else if (resync) {
      const snap = Number(row.state_snapshot_nid);
      const r = resolver.resolve(snap);
      if ('kind' in r) add(r.kind, row.event_id, r.why);
      else if (checkMap(r.map, row.event_id, `state snapshot ${snap}`)) {
        state.clear();
        for (const [k, v] of r.map) state.set(k, v);
        stateVersion++;
      }
      lastCompared = { snap, stateVersion };
    } else {
      const snap = Number(row.state_snapshot_nid);
      if (!lastCompared || lastCompared.snap !== snap || lastCompared.stateVersion !== stateVersion) {
        const r = resolver.resolve(snap);
        if ('kind' in r) add(r.kind, row.event_id, r.why);
        else if (checkMap(r.map, row.event_id, `state snapshot ${snap}`) && !mapsEqual(r.map, state)) {
          add(
            'state_mismatch',
            row.event_id,
            `state before the event (snapshot ${snap}): ${describeDiff(state, r.map)}`,
          );
        }
        lastCompared = { snap, stateVersion };
      }
    }
    if (typeof pdu.state_key === 'string') {
      state.set(stateKey(pdu.type, pdu.state_key), g.nid);
      stateVersion++;
    }
  }

  // Edges to events this server does not have.
  if (unknownTargets.size) {
    const elsewhere = new Set<string>();
    const ids = [...unknownTargets.keys()];
    for (let i = 0; i < ids.length; i += 500) {
      const found = await db
        .selectFrom('events')
        .select('event_id')
        .where('event_id', 'in', ids.slice(i, i + 500))
        .execute();
      for (const f of found) elsewhere.add(f.event_id);
    }
    const absent = await knownAbsentEventIds(db, room.nid, room.id);
    for (const [t, by] of unknownTargets) {
      if (elsewhere.has(t) || absent.has(t)) continue;
      missingEdges.push({ eventId: t, referencedBy: by });
      add(
        'edge_dangling',
        by,
        `edge to ${t}, an event this server does not have and has not recorded as missing`,
      );
    }
  }

  if (inviteOnly) {
    // Only memberships of local users known from federation: an invite received, a knock or a leave sent (a
    // rejected invite, a rescinded knock), each row naming that user's member event with that membership.
    for (const m of data.members) {
      const g = good.find((x) => x.nid === Number(m.event_nid));
      if (
        !['invite', 'knock', 'leave'].includes(m.membership) ||
        g?.pdu.type !== 'm.room.member' ||
        g.pdu.state_key !== m.user_id ||
        g.pdu.content.membership !== m.membership
      )
        add(
          'room_members_mismatch',
          null,
          `${m.user_id}: a room known through an invite or a knock has a ${m.membership} row`,
        );
    }
    return { room, problems, bad, good, finalState: state, extremities: [], missingEdges, edgeRowsToRewrite };
  }

  // Current snapshot, current state, membership, extremities. With several extremities the current state is the
  // resolution of their states, made when the last of them was written: the stored current snapshot is the reference.
  if (data.fwd.length > 1 && room.currentSnapshotNid !== null) {
    const r = resolver.resolve(room.currentSnapshotNid);
    if (!('kind' in r) && checkMap(r.map, null, 'current snapshot')) {
      state.clear();
      for (const [k, v] of r.map) state.set(k, v);
    }
  }
  if (room.currentSnapshotNid === null) {
    add('current_snapshot_mismatch', null, 'room has no current state snapshot');
  } else {
    const r = resolver.resolve(room.currentSnapshotNid);
    if ('kind' in r) add('current_snapshot_mismatch', null, `current snapshot: ${r.why}`);
    else if (checkMap(r.map, null, 'current snapshot') && !mapsEqual(r.map, state)) {
      add(
        'current_snapshot_mismatch',
        null,
        `current snapshot ${room.currentSnapshotNid}: ${describeDiff(state, r.map)}`,
      );
    }
  }
  const current: StateMapNids = new Map(
    data.current.map((c) => [stateKey(c.type, c.state_key), Number(c.event_nid)]),
  );
  if (!mapsEqual(current, state))
    add('current_state_mismatch', null, `current_state: ${describeDiff(state, current)}`);

  const byNid = new Map(good.map((g) => [g.nid, g]));
  const wantMembers = new Map<string, string>();
  for (const [k, nid] of state) {
    const g = byNid.get(nid);
    if (!g || g.pdu.type !== 'm.room.member') continue;
    const m = typeof g.pdu.content.membership === 'string' ? g.pdu.content.membership : 'leave';
    wantMembers.set(k.slice(k.indexOf('\u0000') + 1), `${m}|${nid}|${Number(g.row.stream_ordering)}`);
  }
  const gotMembers = new Map(
    data.members.map((m) => [
      m.user_id,
      `${m.membership}|${Number(m.event_nid)}|${Number(m.stream_ordering)}`,
    ]),
  );
  const memberDiffs = [...new Set([...wantMembers.keys(), ...gotMembers.keys()])].filter(
    (u) => wantMembers.get(u) !== gotMembers.get(u),
  );
  if (memberDiffs.length) {
    const u = memberDiffs[0] as string;
    add(
      'room_members_mismatch',
      null,
      `${memberDiffs.length} users differ from current state, e.g. ${u}: stored ${gotMembers.get(u) ?? 'none'}, expected ${wantMembers.get(u) ?? 'none'} (membership|event|stream)`,
    );
  }

  const gotFwd = new Set(data.fwd.map((f) => Number(f.event_nid)));
  // In a room joined over federation, an event whose prev event is not in this server's timeline follows a gap
  // (a rejoin: the room went on without this server). An earlier event may have its successors in the gap: it
  // need not be an extremity (and stays one only if it was).
  const timelineIds = new Set(good.filter((g) => !g.row.outlier).map((g) => g.row.event_id));
  let lastGap = -1;
  good.forEach((g, i) => {
    if (joinedRemotely && !g.row.outlier && prevIds(g.pdu).some((p) => !timelineIds.has(p))) lastGap = i;
  });
  const extremities = good
    .filter(
      (g, i) => !g.row.outlier && !referenced.has(g.row.event_id) && (i >= lastGap || gotFwd.has(g.nid)),
    )
    .map((g) => g.nid);
  if (gotFwd.size !== extremities.length || extremities.some((n) => !gotFwd.has(n))) {
    add(
      'forward_extremities_mismatch',
      null,
      `stored extremities [${[...gotFwd].join(', ')}], events without successors [${extremities.join(', ')}]`,
    );
  }

  return { room, problems, bad, good, finalState: state, extremities, missingEdges, edgeRowsToRewrite };
}
