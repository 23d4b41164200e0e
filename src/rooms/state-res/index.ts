/** State resolution: v1 (room version 1), v2 (versions 2-11) and v2.1 (version 12). */

import { getRoomVersion, type RoomVersion } from '../room-versions.js';
import { EventGraph } from './graph.js';
import { resolveStateV1 } from './v1.js';
import { resolveStateV2 } from './v2.js';
import type { EventLookup, StateMap, StateResolutionOptions } from './types.js';

/**
 * Resolve a set of room states into one, per the room version's state resolution algorithm.
 *
 * `stateSets` map `stateMapKey(type, state_key)` to event IDs. `getEvent` must return the events of the
 * state sets and of their auth chains; events it cannot find are left out of the resolution. Pure: the
 * caller prefetches events (and may supply auth chains and rejection status through `opts`).
 */
export function resolveState(
  version: string | RoomVersion,
  stateSets: readonly StateMap[],
  getEvent: EventLookup,
  opts: StateResolutionOptions = {},
): Map<string, string> {
  const v = getRoomVersion(version);
  if (stateSets.length === 0) return new Map();
  if (stateSets.length === 1) return new Map(stateSets[0]);
  const graph = new EventGraph(getEvent, opts);
  return v.stateResolution === 'v1'
    ? resolveStateV1(stateSets, graph, v)
    : resolveStateV2(stateSets, graph, v);
}

export { conflictedStateSubgraph, isPowerEvent, partitionStateSets } from './v2.js';
export { EventGraph } from './graph.js';
export { parseStateMapKey, stateMapKey } from './types.js';
export type { EventLookup, StateMap, StateResolutionOptions } from './types.js';
