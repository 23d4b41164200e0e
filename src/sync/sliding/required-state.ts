/** Which room state a (combined) sliding sync room config asks for. */
import type { RequiredState, RoomConfig, StateElement } from './request.js';

/** Several configs matching one room, combined as their superset. */
export interface CombinedConfig {
  timelineLimit: number;
  states: RequiredState[];
}

export function combine(configs: readonly RoomConfig[]): CombinedConfig {
  return {
    timelineLimit: Math.max(0, ...configs.map((c) => c.timelineLimit)),
    states: configs.map((c) => c.requiredState),
  };
}

function matches(el: StateElement, type: string, stateKey: string): boolean {
  return (
    (el.type === undefined || el.type === type) && (el.stateKey === undefined || el.stateKey === stateKey)
  );
}

/** Whether one required_state asks for the entry; with lazy members a full wildcard does not cover memberships. */
function wantsOne(rs: RequiredState, type: string, stateKey: string): boolean {
  if (rs.exclude.some((e) => matches(e, type, stateKey))) return false;
  return rs.include.some(
    (e) =>
      matches(e, type, stateKey) &&
      !(rs.lazy && type === 'm.room.member' && e.type === undefined && e.stateKey === undefined),
  );
}

/** Whether any of the combined configs asks for the state entry (lazy members aside). */
export function wants(states: readonly RequiredState[], type: string, stateKey: string): boolean {
  return states.some((rs) => wantsOne(rs, type, stateKey));
}

export function isLazy(states: readonly RequiredState[]): boolean {
  return states.some((rs) => rs.lazy);
}

/** A stable serialisation of the combined required_state, stored per room and connection. */
export function serialiseStates(states: readonly RequiredState[]): string {
  const norm = states.map((rs) => ({
    include: rs.include.map((e) => [e.type ?? null, e.stateKey ?? null]),
    exclude: rs.exclude.map((e) => [e.type ?? null, e.stateKey ?? null]),
    lazy: rs.lazy,
  }));
  return JSON.stringify(norm.map((n) => JSON.stringify(n)).sort());
}

/** Reads back {@link serialiseStates}; an unreadable value is "nothing asked" (the state is then sent again). */
export function parseStates(raw: string): RequiredState[] {
  try {
    const outer: unknown = JSON.parse(raw);
    if (!Array.isArray(outer)) return [];
    const el = (p: unknown): StateElement => {
      const [type, stateKey] = Array.isArray(p) ? (p as unknown[]) : [];
      return {
        ...(typeof type === 'string' ? { type } : {}),
        ...(typeof stateKey === 'string' ? { stateKey } : {}),
      };
    };
    return outer.map((s) => {
      const o = JSON.parse(String(s)) as { include?: unknown[]; exclude?: unknown[]; lazy?: unknown };
      return {
        include: (o.include ?? []).map(el),
        exclude: (o.exclude ?? []).map(el),
        lazy: o.lazy === true,
      };
    });
  } catch {
    return [];
  }
}
