/** The iterative auth checks of state resolution v2 (and the auth lookups of v1). */

import { authEventTypesFor } from '../auth/auth-events.js';
import { checkEventAuth } from '../auth/check.js';
import type { StateLookup } from '../auth/types.js';
import { createEventIdFromRoomId, type Pdu } from '../event.js';
import { computeEventId } from '../hashing.js';
import type { RoomVersion } from '../room-versions.js';
import type { EventGraph } from './graph.js';
import { stateMapKey } from './types.js';

/** The state of `pdu`'s (non-rejected) auth events, keyed by `(type, state_key)`. */
export function authEventsState(pdu: Pdu, graph: EventGraph): Map<string, Pdu> {
  const out = new Map<string, Pdu>();
  for (const id of pdu.auth_events) {
    if (graph.isRejected(id)) continue;
    const ev = graph.get(id);
    if (ev && typeof ev.state_key === 'string') out.set(stateMapKey(ev.type, ev.state_key), ev);
  }
  return out;
}

/** The create event of a v12 room, found through its room ID. */
function createFromRoomId(pdu: Pdu, graph: EventGraph): Pdu | undefined {
  return pdu.room_id === undefined ? undefined : graph.get(createEventIdFromRoomId(pdu.room_id));
}

/**
 * The auth state for `pdu` during state resolution: the keys the auth rules need are taken from `state`
 * when present there (and not rejected), otherwise from the event's own auth events. In v12 the create
 * event is found from the room ID when it is not in either.
 */
export function resolutionLookup(
  pdu: Pdu,
  state: ReadonlyMap<string, string>,
  graph: EventGraph,
  v: RoomVersion,
): StateLookup {
  const auth = authEventsState(pdu, graph);
  const keys = authEventTypesFor(pdu, v).map(([t, k]) => stateMapKey(t, k));
  if (v.roomIdFromCreateEvent) keys.push(stateMapKey('m.room.create', ''));
  for (const key of keys) {
    const id = state.get(key);
    if (id === undefined || graph.isRejected(id)) continue;
    const ev = graph.get(id);
    if (ev) auth.set(key, ev);
  }
  return (type, stateKey) => {
    const found = auth.get(stateMapKey(type, stateKey));
    if (found) return found;
    if (v.roomIdFromCreateEvent && type === 'm.room.create' && stateKey === '')
      return createFromRoomId(pdu, graph);
    return undefined;
  };
}

/** Whether `pdu` passes the auth rules against `state` as state resolution defines it. */
export function allowedInState(
  eventId: string,
  pdu: Pdu,
  state: ReadonlyMap<string, string>,
  graph: EventGraph,
  v: RoomVersion,
): boolean {
  if (graph.isRejected(eventId)) return false;
  const lookup = resolutionLookup(pdu, state, graph, v);
  const eventIdOf = (e: Pdu): string => graph.idOf(e) ?? computeEventId(e, v);
  return checkEventAuth(pdu, lookup, v, { eventIdOf }).allowed;
}

/**
 * Apply the events in order to `initial`, keeping each state event that passes the auth rules.
 * Returns a new state map.
 */
export function iterativeAuthChecks(
  initial: ReadonlyMap<string, string>,
  eventIds: readonly string[],
  graph: EventGraph,
  v: RoomVersion,
): Map<string, string> {
  const state = new Map(initial);
  for (const id of eventIds) {
    const pdu = graph.get(id);
    if (!pdu || typeof pdu.state_key !== 'string') continue;
    if (allowedInState(id, pdu, state, graph, v)) state.set(stateMapKey(pdu.type, pdu.state_key), id);
  }
  return state;
}
