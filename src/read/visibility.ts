/**
 * History visibility (client-server API "Room History Visibility", server behaviour): whether a user may see
 * an event is decided by the room state AT that event (its state snapshot, i.e. the state before it, and for
 * history-visibility and the user's own membership events also the state after it).
 *
 * `filterVisible` works on any list of loaded events (several rooms allowed): each distinct snapshot is loaded
 * once (the reader caches them), the user's membership events are read once per room. /messages, /context,
 * /sync and /search share it.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.js';
import { stateKey } from '../storage/state.js';
import type { EventReader, LoadedEvent } from './event-reader.js';
import { memberEventPositions, roomNidsByIds } from './room-queries.js';

export type HistoryVisibility = 'world_readable' | 'shared' | 'invited' | 'joined';

export interface VisibilityDeps {
  reader: EventReader;
  db: Kysely<Database>;
}

const KNOWN = new Set<string>(['world_readable', 'shared', 'invited', 'joined']);
const HV_KEY = stateKey('m.room.history_visibility', '');

/** The setting named by an m.room.history_visibility content; absent or unknown means `shared`. */
export function historyVisibilityOf(content: Record<string, unknown> | undefined): HistoryVisibility {
  const v = content?.history_visibility;
  return typeof v === 'string' && KNOWN.has(v) ? (v as HistoryVisibility) : 'shared';
}

/** The membership named by an m.room.member content; anything unreadable counts as `leave`. */
export function membershipIn(content: Record<string, unknown> | undefined): string {
  const m = content?.membership;
  return typeof m === 'string' ? m : 'leave';
}

/** The room facts at one snapshot that decide visibility for one user. */
export interface VisibilityFacts {
  visibility: HistoryVisibility;
  membership: string;
}

/**
 * The spec's algorithm for one state: world_readable, joined, shared and joined at any point later, or invited
 * under `invited`. `joinedLater` says whether the user has a join after the event.
 */
export function allowedBy(facts: VisibilityFacts, joinedLater: boolean): boolean {
  if (facts.visibility === 'world_readable') return true;
  if (facts.membership === 'join') return true;
  if (facts.visibility === 'shared' && joinedLater) return true;
  return facts.membership === 'invite' && facts.visibility === 'invited';
}

/** Whether `userId` may see `ev`, given the facts before it and the stream positions of the user's joins. */
export function isVisible(
  ev: LoadedEvent,
  before: VisibilityFacts,
  joinPositions: readonly number[],
  userId: string,
): boolean {
  const pos = ev.streamOrdering ?? Number.MAX_SAFE_INTEGER;
  const joinedLater = joinPositions.some((p) => p > pos);
  if (allowedBy(before, joinedLater)) return true;
  const { pdu } = ev;
  if (pdu.type === 'm.room.history_visibility' && pdu.state_key === '') {
    return allowedBy({ ...before, visibility: historyVisibilityOf(pdu.content) }, joinedLater);
  }
  // A user always sees their own membership events (as Synapse): a rejected invite or a kick must reach them.
  if (pdu.type === 'm.room.member' && pdu.state_key === userId) return true;
  return false;
}

/** Visibility facts of the user at each snapshot; a snapshot that cannot be read is absent (deny). */
export async function factsAtSnapshots(
  deps: VisibilityDeps,
  userId: string,
  snapshots: ReadonlyMap<number, string>,
): Promise<Map<number, VisibilityFacts>> {
  const maps = new Map<number, { hv?: number | undefined; member?: number | undefined }>();
  const wanted: number[] = [];
  for (const [snap, roomId] of snapshots) {
    const map = await deps.reader.snapshot(snap, { roomId });
    if (!map) continue;
    const hv = map.get(HV_KEY);
    const member = map.get(stateKey('m.room.member', userId));
    if (hv !== undefined) wanted.push(hv);
    if (member !== undefined) wanted.push(member);
    maps.set(snap, { hv, member });
  }
  const events = await deps.reader.byNids(wanted);
  const out = new Map<number, VisibilityFacts>();
  for (const [snap, { hv, member }] of maps) {
    out.set(snap, {
      visibility: historyVisibilityOf(hv === undefined ? undefined : events.get(hv)?.pdu.content),
      membership: member === undefined ? 'leave' : membershipIn(events.get(member)?.pdu.content),
    });
  }
  return out;
}

/** Stream positions of the user's joins in each room. */
export async function joinPositions(
  deps: VisibilityDeps,
  userId: string,
  roomIds: readonly string[],
): Promise<Map<string, number[]>> {
  const nids = await roomNidsByIds(deps.db, roomIds);
  const out = new Map<string, number[]>();
  for (const [roomId, roomNid] of nids) {
    const positions = await memberEventPositions(deps.db, roomNid, userId);
    const events = await deps.reader.byNids(positions.map((p) => p.nid));
    out.set(
      roomId,
      positions.filter((p) => membershipIn(events.get(p.nid)?.pdu.content) === 'join').map((p) => p.pos),
    );
  }
  return out;
}

/**
 * The events of `events` that `userId` may see, in their original order. Outliers (no state snapshot) and
 * events whose state cannot be read are withheld.
 */
export async function filterVisible(
  deps: VisibilityDeps,
  userId: string,
  events: readonly LoadedEvent[],
): Promise<LoadedEvent[]> {
  if (events.length === 0) return [];
  const snapshots = new Map<number, string>();
  for (const ev of events) if (ev.stateSnapshotNid !== null) snapshots.set(ev.stateSnapshotNid, ev.roomId);
  const facts = await factsAtSnapshots(deps, userId, snapshots);
  const joins = await joinPositions(deps, userId, [...new Set(events.map((e) => e.roomId))]);
  return events.filter((ev) => {
    const before = ev.stateSnapshotNid === null ? undefined : facts.get(ev.stateSnapshotNid);
    return before !== undefined && isVisible(ev, before, joins.get(ev.roomId) ?? [], userId);
  });
}
