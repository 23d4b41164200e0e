/**
 * Ignoring users (client-server API "Ignoring Users") and invite blocking (v1.18 "Invite permission") as seen by
 * the read side: a user is not served the non-state events of the users in their `m.ignored_user_list` (state
 * events still are, so the room looks the same), nor invites sent by them, nor any invite while they block invites.
 *
 * /sync v2 shares room sections between the users woken at one position, so this is a per-user step over the
 * assembled response (`excludeFromSync`), run before the response is judged empty; /messages, /context, /event,
 * /relations, /threads, /notifications and sliding sync timelines filter their loaded events (`withoutIgnored`),
 * /search adds the ignored users to its filter's `not_senders`, the legacy endpoints filter their chunks
 * (`dropIgnoredJson`). Like Synapse, typing, receipts, presence and
 * to-device messages of ignored users are still served (matrix-spec#2112 leaves it open).
 *
 * The exclusions are read from committed account data through a per-user cache that a write of either type clears,
 * so the next request after a change already follows it (the spec's "immediately"); what was sent while a user was
 * ignored is not sent again when they are un-ignored (a client wanting it does a fresh sync, as the spec says).
 */
import type { JsonObject } from '../rooms/event.js';
import type { Executor } from '../storage/users.js';
import { syncExclusions, type SyncExclusions } from '../storage/sync-exclusions.js';

export { syncExclusions };

/** Whether `ignored` hides an event with this sender and state key (state events are never hidden). */
export function hiddenBy(ignored: ReadonlySet<string>, sender: unknown, stateKey: unknown): boolean {
  return stateKey === undefined && typeof sender === 'string' && ignored.has(sender);
}

/** `events` without the non-state events of the users `userId` ignores (the same array when none is dropped). */
export async function withoutIgnored<T extends { pdu: { sender: string; state_key?: string } }>(
  db: Executor,
  userId: string,
  events: T[],
): Promise<T[]> {
  if (events.length === 0) return events;
  const { ignored } = await syncExclusions(db, userId);
  if (ignored.size === 0) return events;
  return events.filter((e) => !hiddenBy(ignored, e.pdu.sender, e.pdu.state_key));
}

/** Whether the user ignores the sender of this (non-state) event. */
export async function ignoresSender(
  db: Executor,
  userId: string,
  ev: { pdu: { sender: string; state_key?: string } },
): Promise<boolean> {
  return (await withoutIgnored(db, userId, [ev])).length === 0;
}

/** The rooms sections of one user's /sync response, as assembled (room id -> room object). */
export interface SyncRoomSections {
  join: JsonObject;
  invite: JsonObject;
  leave: JsonObject;
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const eventsOf = (section: unknown): unknown[] =>
  isObject(section) && Array.isArray(section.events) ? section.events : [];

/**
 * Drops from one user's assembled /sync rooms what their exclusions hide: ignored users' non-state timeline events,
 * invites from ignored users, every invite while invites are blocked. In an incremental sync a joined room left
 * with nothing to say (its only news came from ignored users, no gap) is dropped, so they do not end a long-poll.
 * A timeline is not refilled past the filtered events (Synapse loads more): it may come out shorter than the limit.
 * Room objects may be shared with other users' responses: they are replaced, never changed in place.
 */
export async function excludeFromSync(
  db: Executor,
  userId: string,
  rooms: SyncRoomSections,
  incremental: boolean,
): Promise<void> {
  const x = await syncExclusions(db, userId);
  if (x.ignored.size === 0 && !x.blocksInvites) return;
  for (const roomId of Object.keys(rooms.invite)) {
    if (x.blocksInvites || x.ignored.has(inviterOf(rooms.invite[roomId], userId) ?? ''))
      delete rooms.invite[roomId];
  }
  if (x.ignored.size === 0) return;
  for (const section of [rooms.join, rooms.leave]) {
    for (const roomId of Object.keys(section)) {
      const room = section[roomId];
      if (!isObject(room) || !isObject(room.timeline)) continue;
      const events = eventsOf(room.timeline);
      const kept = events.filter((e) => !(isObject(e) && hiddenBy(x.ignored, e.sender, e.state_key)));
      if (kept.length === events.length) continue;
      // A limited timeline keeps its room: the gap before it may hold others' events (the client paginates back).
      const gap = room.timeline.limited === true;
      if (incremental && section === rooms.join && kept.length === 0 && !gap && saysNothingElse(room)) {
        delete section[roomId];
        continue;
      }
      section[roomId] = { ...room, timeline: { ...room.timeline, events: kept } };
    }
  }
}

/** The sender of the user's own invite event in an invite section's stripped state. */
function inviterOf(room: unknown, userId: string): string | undefined {
  if (!isObject(room)) return undefined;
  for (const e of eventsOf(room.invite_state)) {
    if (!isObject(e) || e.type !== 'm.room.member' || e.state_key !== userId) continue;
    if (isObject(e.content) && e.content.membership === 'invite' && typeof e.sender === 'string')
      return e.sender;
  }
  return undefined;
}

/** A joined room whose state, ephemeral events and account data are all empty. */
function saysNothingElse(room: JsonObject): boolean {
  return (
    eventsOf(room.state).length === 0 &&
    eventsOf(room.state_after).length === 0 &&
    eventsOf(room.ephemeral).length === 0 &&
    eventsOf(room.account_data).length === 0
  );
}

export type { SyncExclusions };

/**
 * For the legacy endpoints (GET /events, /initialSync, /rooms/{roomId}/initialSync): `chunk` without the formatted
 * room events (those with an `event_id`) that ignored users sent and that are not state; presence and other
 * ephemeral events pass.
 */
export function dropIgnoredJson<T>(ignored: ReadonlySet<string>, chunk: T[]): T[] {
  if (ignored.size === 0) return chunk;
  return chunk.filter(
    (e) => !(isObject(e) && typeof e.event_id === 'string' && hiddenBy(ignored, e.sender, e.state_key)),
  );
}
