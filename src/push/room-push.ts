/**
 * Push rule evaluation against stored rooms: the room facts push conditions need (joined member count, the user's
 * display name, power levels), read from the room's current state, and the evaluation of loaded events for a user.
 */
import type { Kysely } from 'kysely';
import { clientEvent, type EventReader, type LoadedEvent } from '../read/event-reader.js';
import { findRoomVersion } from '../rooms/room-versions.js';
import type { Database } from '../storage/schema.js';
import type { PushRuleset } from './default-rules.js';
import { evaluatePushRules, pushPowerLevels, type PushOutcome } from './evaluate.js';

export interface RoomPushFacts {
  memberCount: number;
  /** user id → display name, for the users asked about. */
  displayNames: Map<string, string | null>;
  powerLevels: Record<string, unknown> | undefined;
  /** Room versions 12+: the creators, who have infinite power. */
  creators: string[];
}

function asObject(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** The facts of a room's current state that push conditions use, for the given users' display names. */
export async function loadRoomPushFacts(
  db: Kysely<Database>,
  reader: EventReader,
  roomNid: number,
  userIds: readonly string[],
): Promise<RoomPushFacts> {
  const facts = await loadRoomsPushFacts(db, reader, [roomNid], userIds);
  return facts.get(roomNid) ?? emptyFacts(userIds);
}

const emptyFacts = (userIds: readonly string[]): RoomPushFacts => ({
  memberCount: 0,
  displayNames: new Map(userIds.map((u) => [u, null])),
  powerLevels: undefined,
  creators: [],
});

const CHUNK = 500;

/** {@link loadRoomPushFacts} for many rooms at once: three queries per 500 rooms. */
export async function loadRoomsPushFacts(
  db: Kysely<Database>,
  reader: EventReader,
  roomNids: readonly number[],
  userIds: readonly string[],
): Promise<Map<number, RoomPushFacts>> {
  const out = new Map<number, RoomPushFacts>();
  for (const nid of roomNids) out.set(nid, emptyFacts(userIds));
  for (let i = 0; i < roomNids.length; i += CHUNK) {
    const chunk = roomNids.slice(i, i + CHUNK);
    const [counts, stateRows] = await Promise.all([
      db
        .selectFrom('room_members')
        .select(['room_nid', (eb) => eb.fn.countAll().as('n')])
        .where('room_nid', 'in', chunk)
        .where('membership', '=', 'join')
        .groupBy('room_nid')
        .execute(),
      db
        .selectFrom('current_state')
        .select(['room_nid', 'type', 'state_key', 'event_nid'])
        .where('room_nid', 'in', chunk)
        .where((eb) =>
          eb.or([
            eb.and([eb('type', 'in', ['m.room.power_levels', 'm.room.create']), eb('state_key', '=', '')]),
            ...(userIds.length
              ? [eb.and([eb('type', '=', 'm.room.member'), eb('state_key', 'in', [...userIds])])]
              : []),
          ]),
        )
        .execute(),
    ]);
    for (const c of counts) {
      const f = out.get(Number(c.room_nid));
      if (f) f.memberCount = Number(c.n);
    }
    const events = await reader.byNids(stateRows.map((r) => Number(r.event_nid)));
    for (const r of stateRows) {
      const facts = out.get(Number(r.room_nid));
      const ev = events.get(Number(r.event_nid));
      if (!facts || !ev) continue;
      const content = asObject(clientEvent(ev).content) ?? {};
      if (r.type === 'm.room.power_levels') facts.powerLevels = content;
      else if (r.type === 'm.room.member') {
        const name = content.displayname;
        facts.displayNames.set(r.state_key, typeof name === 'string' && name !== '' ? name : null);
      } else if (r.type === 'm.room.create') {
        // Creators have infinite power only in room versions with that rule (v12+).
        if (findRoomVersion(ev.roomVersion)?.privilegedCreators) {
          const extra = Array.isArray(content.additional_creators)
            ? content.additional_creators.filter((c): c is string => typeof c === 'string')
            : [];
          facts.creators = [ev.pdu.sender, ...extra];
        }
      }
    }
  }
  return out;
}

/** The event as push rules see it: the client format (redacted when a redaction applies). */
export function pushEventOf(ev: LoadedEvent): Record<string, unknown> {
  if (ev.redactedBy) return clientEvent(ev) as unknown as Record<string, unknown>;
  return { ...ev.pdu, event_id: ev.eventId, room_id: ev.roomId };
}

/** The outcome of `userId`'s rules for one event of the room the facts are about. */
export function evaluateForUser(
  ev: LoadedEvent,
  userId: string,
  rules: PushRuleset,
  facts: RoomPushFacts,
): PushOutcome | undefined {
  if (ev.pdu.sender === userId) return undefined;
  const event = pushEventOf(ev);
  return evaluatePushRules(
    event,
    {
      memberCount: facts.memberCount,
      displayName: facts.displayNames.get(userId) ?? null,
      ...pushPowerLevels(facts.powerLevels, ev.pdu.sender, facts.creators),
    },
    rules,
  );
}
