/** State resolution v2 (rooms/fragments/v2-state-res.md) and v2.1 (room version 12). */

import { userPowerLevel } from '../auth/power-levels.js';
import type { Pdu } from '../event.js';
import type { RoomVersion } from '../room-versions.js';
import { compareIds, EventGraph, topologicalSort } from './graph.js';
import { iterativeAuthChecks, resolutionLookup } from './iterative.js';
import { stateMapKey, type StateMap } from './types.js';

export interface Partitioned {
  unconflicted: Map<string, string>;
  conflicted: Set<string>;
}

/** Split state sets into the unconflicted state map and the conflicted state set (event IDs). */
export function partitionStateSets(stateSets: readonly StateMap[]): Partitioned {
  const unconflicted = new Map<string, string>();
  const conflicted = new Set<string>();
  const keys = new Set<string>();
  for (const s of stateSets) for (const k of s.keys()) keys.add(k);
  for (const key of keys) {
    const values = stateSets.map((s) => s.get(key));
    const first = values[0];
    if (first !== undefined && values.every((v) => v === first)) unconflicted.set(key, first);
    else for (const v of values) if (v !== undefined) conflicted.add(v);
  }
  return { unconflicted, conflicted };
}

/** Power events: power levels, join rules, and kicks/bans (leave or ban with sender ≠ state key). */
export function isPowerEvent(pdu: Pdu): boolean {
  if (typeof pdu.state_key !== 'string') return false;
  if (pdu.type === 'm.room.power_levels' || pdu.type === 'm.room.join_rules') return pdu.state_key === '';
  if (pdu.type === 'm.room.member') {
    const m = pdu.content['membership'];
    return (m === 'leave' || m === 'ban') && pdu.sender !== pdu.state_key;
  }
  return false;
}

function authDifference(stateSets: readonly StateMap[], graph: EventGraph): Set<string> {
  const chains = stateSets.map((s) => {
    const full = new Set<string>();
    for (const id of s.values()) for (const a of graph.authChain(id)) full.add(a);
    return full;
  });
  const union = new Set<string>();
  for (const c of chains) for (const id of c) union.add(id);
  const diff = new Set<string>();
  for (const id of union) if (!chains.every((c) => c.has(id))) diff.add(id);
  return diff;
}

/** Events on `auth_events` paths between two events of the conflicted set, endpoints included (v2.1). */
export function conflictedStateSubgraph(conflicted: ReadonlySet<string>, graph: EventGraph): Set<string> {
  // Events reachable from the conflicted set, and the reversed auth edges between them.
  const reachable = new Set<string>();
  const citedBy = new Map<string, string[]>();
  const stack = [...conflicted];
  while (stack.length > 0) {
    const id = stack.pop() as string;
    if (reachable.has(id)) continue;
    reachable.add(id);
    for (const a of graph.get(id)?.auth_events ?? []) {
      const list = citedBy.get(a);
      if (list) list.push(id);
      else citedBy.set(a, [id]);
      stack.push(a);
    }
  }
  // Of those, the ones from which a conflicted event is reachable: walk the reversed edges from the set.
  const out = new Set<string>();
  const work = [...conflicted].filter((id) => reachable.has(id));
  while (work.length > 0) {
    const id = work.pop() as string;
    if (out.has(id)) continue;
    out.add(id);
    for (const c of citedBy.get(id) ?? []) if (!out.has(c)) work.push(c);
  }
  return out;
}

function senderPowerLevel(id: string, graph: EventGraph, v: RoomVersion): number {
  const pdu = graph.get(id);
  if (!pdu) return 0;
  return userPowerLevel(pdu.sender, resolutionLookup(pdu, new Map(), graph, v), v);
}

function reverseTopologicalPowerOrder(ids: Iterable<string>, graph: EventGraph, v: RoomVersion): string[] {
  const power = new Map<string, number>();
  const pl = (id: string): number => {
    let p = power.get(id);
    if (p === undefined) {
      p = senderPowerLevel(id, graph, v);
      power.set(id, p);
    }
    return p;
  };
  const ts = (id: string): number => graph.get(id)?.origin_server_ts ?? 0;
  return topologicalSort(ids, graph, (a, b) => pl(b) - pl(a) || ts(a) - ts(b) || compareIds(a, b));
}

function powerLevelsAuthEvent(id: string, graph: EventGraph): string | undefined {
  for (const a of graph.get(id)?.auth_events ?? []) {
    const ev = graph.get(a);
    if (ev?.type === 'm.room.power_levels' && ev.state_key === '') return a;
  }
  return undefined;
}

function mainlineOrder(
  ids: readonly string[],
  powerLevelsId: string | undefined,
  graph: EventGraph,
): string[] {
  const mainline = new Map<string, number>();
  for (
    let p = powerLevelsId, i = 0;
    p !== undefined && !mainline.has(p);
    p = powerLevelsAuthEvent(p, graph), i++
  ) {
    mainline.set(p, i);
  }
  const position = new Map<string, number>();
  const positionOf = (id: string): number => {
    let pos = position.get(id);
    if (pos !== undefined) return pos;
    pos = Infinity;
    const seen = new Set<string>();
    for (
      let e = powerLevelsAuthEvent(id, graph);
      e !== undefined && !seen.has(e);
      e = powerLevelsAuthEvent(e, graph)
    ) {
      seen.add(e);
      const found = mainline.get(e);
      if (found !== undefined) {
        pos = found;
        break;
      }
    }
    position.set(id, pos);
    return pos;
  };
  const ts = (id: string): number => graph.get(id)?.origin_server_ts ?? 0;
  const cmp = (a: string, b: string): number => {
    const pa = positionOf(a);
    const pb = positionOf(b);
    if (pa !== pb) return pa > pb ? -1 : 1;
    return ts(a) - ts(b) || compareIds(a, b);
  };
  return [...ids].sort(cmp);
}

/** State resolution v2; `v.stateResolution === 'v2.1'` selects the room version 12 changes. */
export function resolveStateV2(
  stateSets: readonly StateMap[],
  graph: EventGraph,
  v: RoomVersion,
): Map<string, string> {
  const { unconflicted, conflicted } = partitionStateSets(stateSets);
  if (conflicted.size === 0) return unconflicted;
  const v21 = v.stateResolution === 'v2.1';

  const full = new Set<string>([...conflicted, ...authDifference(stateSets, graph)]);
  if (v21) for (const id of conflictedStateSubgraph(conflicted, graph)) full.add(id);
  for (const id of [...full]) if (!graph.get(id)) full.delete(id);

  const power = new Set<string>();
  for (const id of full) {
    const pdu = graph.get(id);
    if (!pdu || !isPowerEvent(pdu)) continue;
    power.add(id);
    for (const a of graph.authChain(id)) if (full.has(a)) power.add(a);
  }
  const sortedPower = reverseTopologicalPowerOrder(power, graph, v);
  const partial = iterativeAuthChecks(v21 ? new Map() : unconflicted, sortedPower, graph, v);

  const remaining = [...full].filter((id) => !power.has(id));
  const plId = partial.get(stateMapKey('m.room.power_levels', ''));
  const resolved = iterativeAuthChecks(partial, mainlineOrder(remaining, plId, graph), graph, v);

  for (const [key, id] of unconflicted) resolved.set(key, id);
  return resolved;
}
