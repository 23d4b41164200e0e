import type { Pdu } from '../event.js';

/** A room state: `stateMapKey(type, state_key)` → event ID. */
export type StateMap = ReadonlyMap<string, string>;

/** The key of a `(type, state_key)` pair in a `StateMap`. */
export function stateMapKey(type: string, stateKey: string): string {
  return JSON.stringify([type, stateKey]);
}

/** The `(type, state_key)` pair of a `StateMap` key. */
export function parseStateMapKey(key: string): [type: string, stateKey: string] {
  const parsed: unknown = JSON.parse(key);
  if (!Array.isArray(parsed) || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
    throw new Error(`Not a state map key: ${key}`);
  }
  return [parsed[0], parsed[1]];
}

/** Look up an event by ID; `undefined` if the caller does not have it. */
export type EventLookup = (eventId: string) => Pdu | undefined;

export interface StateResolutionOptions {
  /**
   * The full auth chain (event IDs, excluding the event itself) of an event. Default: computed by walking
   * `auth_events` through the event lookup.
   */
  authChainOf?: (eventId: string) => Iterable<string>;
  /** Whether an event was rejected; rejected events are never admitted to state. Default: none are. */
  isRejected?: (eventId: string) => boolean;
}
