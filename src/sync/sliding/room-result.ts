/**
 * One room of a sliding sync response: what changed since this connection last sent the room (or everything, the
 * first time). Timeline events go through the damage-tolerant event reader and history visibility; required_state
 * is the room's current state (the state at the leave for a room the user left) as the room config asks for it.
 */
import type { JsonObject } from '../../rooms/event.js';
import type { LoadedEvent } from '../../read/event-reader.js';
import { formatStreamToken } from '../../read/tokens.js';
import type { SentRoomRow } from '../../storage/sliding-sync-connections.js';
import { splitStateKey, stateKey, type StateMapNids } from '../../storage/state.js';
import { formatEvents, strippedState } from '../format.js';
import { stateAtPosition, stateBefore } from '../room-state.js';
import type { SyncDeps } from '../sync.js';
import type { RoomBatch } from './batch.js';
import type { Flavour } from './request.js';
import { isLazy, parseStates, serialiseStates, wants, type CombinedConfig } from './required-state.js';
import type { ListedRoom } from './room-list.js';
import { everJoined, neverJoinedRoom } from './never-joined.js';
import { withoutIgnored } from '../ignored.js';

export interface BuildContext {
  deps: SyncDeps;
  userId: string;
  deviceId: string;
  flavour: Flavour;
  /** Stream position where the previous response of the connection ended (null: initial request). */
  since: number | null;
  to: number;
  /** Batched per-room reads of this computation. */
  batch: RoomBatch;
}

export interface RoomInput {
  room: ListedRoom;
  config: CombinedConfig;
  prev: SentRoomRow | undefined;
  lists: string[];
}

export interface RoomOutcome {
  body: JsonObject;
  sent: SentRoomRow;
  /** Timeline events as sent (bundled aggregations are added to them afterwards, for all rooms at once). */
  timeline: JsonObject[];
  /** Stream position of the oldest timeline event (null: none). */
  timelineFrom: number | null;
}

const STRIPPED_TYPES = new Set([
  'm.room.create',
  'm.room.join_rules',
  'm.room.name',
  'm.room.avatar',
  'm.room.canonical_alias',
  'm.room.encryption',
  'm.room.topic',
]);

function common(ctx: BuildContext, input: RoomInput, initial: boolean): JsonObject {
  const body: JsonObject = { bump_stamp: input.room.bumpStamp };
  if (initial) body.initial = true;
  if (ctx.flavour === 'v4') {
    body.membership = input.room.membership;
    if (input.lists.length) body.lists = input.lists;
  }
  return body;
}

function sentRow(input: RoomInput, to: number, lazy: Iterable<string>): SentRoomRow {
  return {
    roomId: input.room.roomId,
    membership: input.room.membership,
    sentTo: to,
    timelineLimit: input.config.timelineLimit,
    requiredState: serialiseStates(input.config.states),
    lazyMembers: JSON.stringify([...lazy].sort()),
  };
}

/** An invited or knocking room: the stripped state of the invite (knock), sent once per membership. */
export async function strippedRoom(ctx: BuildContext, input: RoomInput): Promise<RoomOutcome | undefined> {
  const { room, prev } = input;
  if (prev && prev.membership === room.membership && prev.sentTo >= room.membershipStream) return undefined;
  const { reader } = ctx.deps;
  const ev = (await reader.byNids([room.eventNid])).get(room.eventNid);
  let events: JsonObject[] = [];
  if (ev) {
    // An invite (knock) over federation to a room this server is not in: the resident server's stripped state.
    const given = ev.pdu.unsigned?.invite_room_state ?? ev.pdu.unsigned?.knock_room_state;
    if (ev.stateSnapshotNid === null && Array.isArray(given)) {
      const objects = given.filter(
        (e): e is JsonObject => typeof e === 'object' && e !== null && !Array.isArray(e),
      );
      events = [...objects, strippedState(ev)];
    } else {
      const wanted = new Map<string, number>();
      for (const [k, nid] of await stateBefore(reader, ev)) {
        const [type, key] = splitStateKey(k);
        if (STRIPPED_TYPES.has(type) || (type === 'm.room.member' && key === ev.pdu.sender))
          wanted.set(k, nid);
      }
      const state = await reader.stateEvents(wanted, room.roomId);
      events = [...[...state.values()].map(strippedState), strippedState(ev)];
    }
  }
  const body = common(ctx, input, true);
  if (ctx.flavour === 'v4') body.stripped_state = events;
  else {
    body[room.membership === 'knock' ? 'knock_state' : 'invite_state'] = events;
    // matrix-js-sdk maps over both before looking at invite_state.
    body.required_state = [];
    body.timeline = [];
  }
  return { body, sent: sentRow(input, ctx.to, []), timeline: [], timelineFrom: null };
}

function parseLazy(raw: string | undefined): Set<string> {
  try {
    const v: unknown = JSON.parse(raw ?? '[]');
    return new Set(Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  } catch {
    return new Set();
  }
}

/** A room the user is in or has been in: timeline, required_state deltas, name, heroes, counts. */
export async function fullRoom(ctx: BuildContext, input: RoomInput): Promise<RoomOutcome | undefined> {
  const { room, prev, config } = input;
  const { storage, reader } = ctx.deps;
  const joined = room.membership === 'join';
  const initial = !prev || (joined && prev.membership !== 'join');
  if (!joined && (!prev || prev.membership !== 'join') && !(await everJoined(ctx, room.roomId)))
    return neverJoinedRoom(ctx, input, common(ctx, input, !prev || prev.membership !== room.membership));
  const upTo = joined ? ctx.to : Math.min(room.membershipStream, ctx.to);
  const prevStates = prev ? parseStates(prev.requiredState) : [];
  const stateChangedConfig =
    !initial && prev !== undefined && prev.requiredState !== serialiseStates(config.states);
  const expand = !initial && prev !== undefined && config.timelineLimit > prev.timelineLimit;
  const membershipChanged = !initial && prev !== undefined && prev.membership !== room.membership;
  const news =
    initial || (room.last !== null && room.last > (prev?.sentTo ?? -Infinity)) || membershipChanged;
  if (!news && !stateChangedConfig && !expand) return undefined;

  // Timeline: what is new since the room was last sent, or the latest events (first time, or a larger limit).
  const after = initial || expand ? null : (prev?.sentTo ?? null);
  const { rows: tl, loaded } = await ctx.batch.timeline(
    { roomNid: room.roomNid, after, upTo, limit: config.timelineLimit },
    room.roomId,
    reader,
  );
  const complete = loaded.length === tl.nids.length;
  // Events after the user's current join were sent while they were in the room: visible under every history
  // setting, so only older ones need the full check (and a damaged snapshot does not hide them).
  const sinceJoin = (e: LoadedEvent) => joined && (e.streamOrdering ?? 0) > room.membershipStream;
  const older = loaded.filter((e) => !sinceJoin(e));
  const visible = ctx.deps.visible && older.length ? await ctx.deps.visible(ctx.userId, older) : older;
  // The user always sees their own leave (history visibility would hide a rejected invite's).
  const keep = new Set(visible.map((e) => e.nid));
  const events = (await withoutIgnored(storage.db, ctx.userId, loaded)).filter(
    (e) => sinceJoin(e) || keep.has(e.nid) || e.nid === room.eventNid,
  );
  const expanded = expand && prev !== undefined && events.some((e) => (e.streamOrdering ?? 0) <= prev.sentTo);

  // required_state: the current state (at the leave for a left room), as a delta after the first time.
  // The timeline's newest event is the room's newest at upTo (same query): the state after it is the end state.
  const newest = complete ? loaded[loaded.length - 1] : undefined;
  const endState = newest
    ? await stateAfterEvent(ctx, newest)
    : await stateAtPosition(storage, reader, room.roomNid, room.roomId, upTo);
  // Every event since the last response is in the timeline and none is state: the state then was the same.
  const unchanged =
    !initial && !expand && !tl.limited && complete && loaded.every((e) => e.pdu.state_key === undefined);
  const before: StateMapNids =
    initial || !prev
      ? new Map()
      : unchanged
        ? endState
        : await stateAtPosition(storage, reader, room.roomNid, room.roomId, prev.sentTo);
  const changed = new Set<string>();
  for (const [k, nid] of endState) if (before.get(k) !== nid) changed.add(k);
  const removed = [...before.keys()].filter((k) => !endState.has(k));
  const want = new Map<string, number>();
  for (const [k, nid] of endState) {
    const [type, key] = splitStateKey(k);
    if (!wants(config.states, type, key)) continue;
    if (initial || changed.has(k) || (stateChangedConfig && !wants(prevStates, type, key))) want.set(k, nid);
  }
  const lazy = isLazy(config.states);
  const lazySent = initial || tl.limited ? new Set<string>() : parseLazy(prev?.lazyMembers);
  if (lazy) {
    const users = new Set<string>();
    for (const e of events) {
      users.add(e.pdu.sender);
      if (e.pdu.type === 'm.room.member' && typeof e.pdu.state_key === 'string') users.add(e.pdu.state_key);
    }
    for (const u of users) {
      const k = stateKey('m.room.member', u);
      const nid = endState.get(k);
      if (nid !== undefined && (!lazySent.has(u) || changed.has(k))) want.set(k, nid);
    }
    // Without a gap every membership change since the last response is sent too.
    if (!initial && !tl.limited)
      for (const k of changed)
        if (k.startsWith('m.room.member\u0000')) want.set(k, endState.get(k) as number);
    for (const k of want.keys()) if (k.startsWith('m.room.member\u0000')) lazySent.add(splitStateKey(k)[1]);
  }
  const stateEvents = [...(await reader.stateEvents(want, room.roomId)).values()];
  const stubs =
    ctx.flavour === 'v4'
      ? removed
          .map(splitStateKey)
          .filter(([type, key]) => wants(config.states, type, key))
          .map(([type, key]) => ({ type, state_key: key }))
      : [];

  const nameChanged =
    initial || changed.has(stateKey('m.room.name', '')) || removed.includes(stateKey('m.room.name', ''));
  const avatarChanged =
    initial || changed.has(stateKey('m.room.avatar', '')) || removed.includes(stateKey('m.room.avatar', ''));
  const membersChanged = initial || [...changed].some((k) => k.startsWith('m.room.member\u0000'));
  if (
    !initial &&
    events.length === 0 &&
    stateEvents.length === 0 &&
    stubs.length === 0 &&
    !membershipChanged &&
    !nameChanged &&
    !avatarChanged &&
    !membersChanged
  )
    return undefined;

  const fmt = { format: 'client', omitRoomId: true } as const;
  const txnIds = await ctx.batch.txnIds(events.filter((e) => e.pdu.sender === ctx.userId).map((e) => e.nid));
  const timeline = await formatEvents({ storage, reader }, events, { ...fmt, txnIds });
  const body = common(ctx, input, initial);
  const named = await nameAndAvatar(ctx, room.roomId, endState);
  if (nameChanged && (named.name !== undefined || (ctx.flavour === 'v4' && !initial)))
    body.name = named.name ?? null;
  if (avatarChanged && (named.avatar !== undefined || (ctx.flavour === 'v4' && !initial)))
    body.avatar = named.avatar ?? null;
  if (membersChanged || nameChanged) {
    const counts = await ctx.batch.members(room.roomNid);
    body.joined_count = counts.joined;
    body.invited_count = counts.invited;
    if (named.name === undefined) body.heroes = await heroes(ctx, room.roomId, endState, counts.members);
  }
  const first = events[0];
  body.timeline = timeline;
  body.limited = tl.limited;
  body.prev_batch = formatStreamToken(first?.streamOrdering != null ? first.streamOrdering - 1 : upTo);
  body.num_live =
    ctx.since === null ? 0 : events.filter((e) => (e.streamOrdering ?? 0) > (ctx.since ?? 0)).length;
  if (expanded) body[ctx.flavour === 'v4' ? 'expanded_timeline' : 'unstable_expanded_timeline'] = true;
  // Always an array: matrix-js-sdk maps over it without a check.
  body.required_state = [...(await formatEvents({ storage, reader }, sortByKey(stateEvents), fmt)), ...stubs];
  return {
    body,
    sent: sentRow(input, upTo, lazySent),
    timeline,
    timelineFrom: first?.streamOrdering ?? null,
  };
}

/** The state after an event: its snapshot (empty if damaged, reported by the reader) plus itself if state. */
async function stateAfterEvent(ctx: BuildContext, ev: LoadedEvent): Promise<StateMapNids> {
  const out = new Map(await stateBefore(ctx.deps.reader, ev));
  if (ev.pdu.state_key !== undefined) out.set(stateKey(ev.pdu.type, ev.pdu.state_key), ev.nid);
  return out;
}

function sortByKey(events: LoadedEvent[]): LoadedEvent[] {
  const key = (e: LoadedEvent) => `${e.pdu.type}\u0000${e.pdu.state_key ?? ''}`;
  return [...events].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

async function nameAndAvatar(
  ctx: BuildContext,
  roomId: string,
  state: StateMapNids,
): Promise<{ name?: string; avatar?: string }> {
  const want = new Map<string, number>();
  for (const type of ['m.room.name', 'm.room.avatar']) {
    const nid = state.get(stateKey(type, ''));
    if (nid !== undefined) want.set(type, nid);
  }
  const events = await ctx.deps.reader.stateEvents(want, roomId);
  const name = events.get('m.room.name')?.pdu.content.name;
  const avatar = events.get('m.room.avatar')?.pdu.content.url;
  return {
    ...(typeof name === 'string' && name !== '' ? { name } : {}),
    ...(typeof avatar === 'string' && avatar !== '' ? { avatar } : {}),
  };
}

/** Up to 5 other joined or invited members, with the display name and avatar of their membership events. */
async function heroes(
  ctx: BuildContext,
  roomId: string,
  state: StateMapNids,
  members: string[],
): Promise<JsonObject[]> {
  const ids = members.filter((u) => u !== ctx.userId).slice(0, 5);
  const want = new Map<string, number>();
  for (const u of ids) {
    const nid = state.get(stateKey('m.room.member', u));
    if (nid !== undefined) want.set(u, nid);
  }
  const events = await ctx.deps.reader.stateEvents(want, roomId);
  return ids.map((u) => {
    const content = events.get(u)?.pdu.content ?? {};
    const hero: JsonObject = { user_id: u };
    if (typeof content.displayname === 'string') hero.displayname = content.displayname;
    if (typeof content.avatar_url === 'string') hero.avatar_url = content.avatar_url;
    return hero;
  });
}
