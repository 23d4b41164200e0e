/** Event graph helpers shared by the state resolution algorithms. */

import type { Pdu } from '../event.js';
import type { EventLookup, StateResolutionOptions } from './types.js';

/** Wraps an event lookup, remembering the ID of each event it returns and memoising auth chains. */
export class EventGraph {
  private readonly ids = new WeakMap<Pdu, string>();
  private readonly chains = new Map<string, ReadonlySet<string>>();

  constructor(
    private readonly lookup: EventLookup,
    private readonly opts: StateResolutionOptions = {},
  ) {}

  get(eventId: string): Pdu | undefined {
    const ev = this.lookup(eventId);
    if (ev) this.ids.set(ev, eventId);
    return ev;
  }

  idOf(pdu: Pdu): string | undefined {
    return this.ids.get(pdu);
  }

  isRejected(eventId: string): boolean {
    return this.opts.isRejected?.(eventId) ?? false;
  }

  /** All events reachable through `auth_events` from `eventId` (not including itself). */
  authChain(eventId: string): ReadonlySet<string> {
    const cached = this.chains.get(eventId);
    if (cached) return cached;
    let chain: Set<string>;
    if (this.opts.authChainOf) {
      chain = new Set(this.opts.authChainOf(eventId));
    } else {
      chain = new Set();
      const stack = [...(this.get(eventId)?.auth_events ?? [])];
      while (stack.length > 0) {
        const id = stack.pop() as string;
        if (chain.has(id)) continue;
        chain.add(id);
        const known = this.chains.get(id);
        if (known) {
          for (const k of known) chain.add(k);
          continue;
        }
        for (const a of this.get(id)?.auth_events ?? []) if (!chain.has(a)) stack.push(a);
      }
    }
    this.chains.set(eventId, chain);
    return chain;
  }
}

/**
 * Kahn's algorithm over `ids` with edges from each event to its `auth_events` (restricted to `ids`),
 * emitting auth events before the events citing them and, among the ready events, the smallest by
 * `compare` first.
 */
export function topologicalSort(
  ids: Iterable<string>,
  graph: EventGraph,
  compare: (a: string, b: string) => number,
): string[] {
  const nodes = new Set(ids);
  const pending = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const id of nodes) {
    const auth = new Set((graph.get(id)?.auth_events ?? []).filter((a) => nodes.has(a)));
    pending.set(id, auth.size);
    for (const a of auth) {
      const list = dependents.get(a);
      if (list) list.push(id);
      else dependents.set(a, [id]);
    }
  }
  const ready = [...nodes].filter((id) => pending.get(id) === 0);
  const out: string[] = [];
  while (ready.length > 0) {
    let best = 0;
    for (let i = 1; i < ready.length; i++) {
      if (compare(ready[i] as string, ready[best] as string) < 0) best = i;
    }
    const id = ready.splice(best, 1)[0] as string;
    out.push(id);
    for (const d of dependents.get(id) ?? []) {
      const left = (pending.get(d) ?? 0) - 1;
      pending.set(d, left);
      if (left === 0) ready.push(d);
    }
  }
  return out;
}

/** Plain string comparison by UTF-16 code unit, as event IDs are compared. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
