/** Auth events selection (server-server API "Auth events selection") and the auth_events checks. */

import type { JsonObject, Pdu } from '../event.js';
import { getRoomVersion, type RoomVersion } from '../room-versions.js';
import { stateMapKey } from '../state-res/types.js';
import { ALLOW, deny, type AuthResult } from './types.js';

export interface AuthEventsTemplate {
  type: string;
  sender: string;
  state_key?: string;
  content: JsonObject;
}

/** A state key pair `[type, state_key]`. */
export type StateKey = [type: string, stateKey: string];

/**
 * The `(type, state_key)` pairs whose current state events belong in `auth_events` of a new event.
 * The create event itself has no auth events; room version 12 never selects the create event.
 */
export function authEventTypesFor(template: AuthEventsTemplate, version: string | RoomVersion): StateKey[] {
  const v = getRoomVersion(version);
  if (template.type === 'm.room.create') return [];
  const out: StateKey[] = [];
  const seen = new Set<string>();
  const add = (type: string, stateKey: string): void => {
    const k = stateMapKey(type, stateKey);
    if (!seen.has(k)) {
      seen.add(k);
      out.push([type, stateKey]);
    }
  };
  if (v.createEventInAuthEvents) add('m.room.create', '');
  add('m.room.power_levels', '');
  add('m.room.member', template.sender);
  if (template.type === 'm.room.member' && typeof template.state_key === 'string') {
    const membership = template.content['membership'];
    add('m.room.member', template.state_key);
    if (membership === 'join' || membership === 'invite' || membership === 'knock')
      add('m.room.join_rules', '');
    if (membership === 'invite') {
      const tpi = template.content['third_party_invite'];
      const signed = typeof tpi === 'object' && tpi !== null ? (tpi as JsonObject)['signed'] : undefined;
      const token =
        typeof signed === 'object' && signed !== null ? (signed as JsonObject)['token'] : undefined;
      if (typeof token === 'string') add('m.room.third_party_invite', token);
    }
    const via = template.content['join_authorised_via_users_server'];
    if (membership === 'join' && v.restrictedJoins && typeof via === 'string') add('m.room.member', via);
  }
  return out;
}

/**
 * The IDs of the auth events for a new event, given the current state (`stateMapKey(type, state_key)` →
 * event ID), in selection order. Keys absent from the state are skipped.
 */
export function selectAuthEventIds(
  template: AuthEventsTemplate,
  state: ReadonlyMap<string, string>,
  version: string | RoomVersion,
): string[] {
  const ids: string[] = [];
  for (const [type, stateKey] of authEventTypesFor(template, version)) {
    const id = state.get(stateMapKey(type, stateKey));
    if (id !== undefined) ids.push(id);
  }
  return ids;
}

/**
 * The checks on an event's `auth_events` (rule "Considering the event's auth_events"): no duplicate
 * `(type, state_key)`, only pairs the selection algorithm allows, the create event present (v1-v11),
 * and every auth event in the same room. Whether an auth event was itself rejected is the caller's job.
 */
export function checkAuthEvents(
  pdu: Pdu,
  authEvents: readonly Pdu[],
  version: string | RoomVersion,
): AuthResult {
  const v = getRoomVersion(version);
  if (pdu.type === 'm.room.create') {
    return authEvents.length === 0 ? ALLOW : deny('The m.room.create event must not have auth events');
  }
  const allowed = new Set(authEventTypesFor(pdu, v).map(([t, k]) => stateMapKey(t, k)));
  const seen = new Set<string>();
  let hasCreate = false;
  for (const ev of authEvents) {
    if (typeof ev.state_key !== 'string') return deny(`Auth event of type ${ev.type} is not a state event`);
    const key = stateMapKey(ev.type, ev.state_key);
    if (seen.has(key)) return deny(`Duplicate auth event for (${ev.type}, ${JSON.stringify(ev.state_key)})`);
    seen.add(key);
    if (!allowed.has(key)) {
      return deny(
        `Auth event (${ev.type}, ${JSON.stringify(ev.state_key)}) is not needed to authorise this event`,
      );
    }
    if (ev.room_id !== pdu.room_id) return deny(`Auth event of type ${ev.type} belongs to another room`);
    if (ev.type === 'm.room.create') hasCreate = true;
  }
  if (v.createEventInAuthEvents && !hasCreate)
    return deny('The auth events do not include the m.room.create event');
  return ALLOW;
}
