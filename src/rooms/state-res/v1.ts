/** State resolution of room version 1 (rooms/v1.md "State resolution"), following the spec text. */

import { createHash } from 'node:crypto';

import type { RoomVersion } from '../room-versions.js';
import type { EventGraph } from './graph.js';
import { allowedInState } from './iterative.js';
import { parseStateMapKey, type StateMap } from './types.js';

function sha1(s: string): string {
  return createHash('sha1').update(s).digest('hex');
}

function depth(id: string, graph: EventGraph): number {
  return graph.get(id)?.depth ?? 0;
}

/** Room version 1 state resolution. A conflict is a key with different event IDs in different states. */
export function resolveStateV1(
  stateSets: readonly StateMap[],
  graph: EventGraph,
  v: RoomVersion,
): Map<string, string> {
  const resolved = new Map<string, string>();
  const conflicts = new Map<string, string[]>();
  const candidates = new Map<string, Set<string>>();
  for (const s of stateSets) {
    for (const [key, id] of s) {
      const set = candidates.get(key) ?? new Set<string>();
      set.add(id);
      candidates.set(key, set);
    }
  }
  for (const [key, ids] of candidates) {
    const known = [...ids].filter((id) => graph.get(id) !== undefined);
    if (ids.size === 1) resolved.set(key, [...ids][0] as string);
    else if (known.length === 1) resolved.set(key, known[0] as string);
    else if (known.length > 1) conflicts.set(key, known);
  }

  const authTypes = ['m.room.power_levels', 'm.room.join_rules', 'm.room.member'];
  const keysOfType = (type: string): string[] =>
    [...conflicts.keys()].filter((k) => parseStateMapKey(k)[0] === type).sort();

  for (const type of authTypes) {
    for (const key of keysOfType(type)) {
      const list = [...(conflicts.get(key) ?? [])].sort(
        (a, b) => depth(a, graph) - depth(b, graph) || (sha1(a) < sha1(b) ? 1 : sha1(a) > sha1(b) ? -1 : 0),
      );
      const [first, ...rest] = list;
      if (first === undefined) continue;
      resolved.set(key, first);
      for (const id of rest) {
        const pdu = graph.get(id);
        if (!pdu || !allowedInState(id, pdu, resolved, graph, v)) break;
        resolved.set(key, id);
      }
      conflicts.delete(key);
    }
  }

  for (const key of [...conflicts.keys()].sort()) {
    const list = [...(conflicts.get(key) ?? [])].sort(
      (a, b) => depth(b, graph) - depth(a, graph) || (sha1(a) < sha1(b) ? -1 : sha1(a) > sha1(b) ? 1 : 0),
    );
    for (const id of list) {
      const pdu = graph.get(id);
      if (pdu && allowedInState(id, pdu, resolved, graph, v)) {
        resolved.set(key, id);
        break;
      }
    }
  }
  return resolved;
}
