import type { Pdu } from '../event.js';

/** The state an event is authorised against: `(type, state_key)` → event, or `undefined` if absent. */
export type StateLookup = (type: string, stateKey: string) => Pdu | undefined;

export type AuthResult = { allowed: true } | { allowed: false; reason: string };

export interface AuthOptions {
  /**
   * Whether the event carries a valid signature from `serverName` (used for
   * `join_authorised_via_users_server`). Default: a signature from that server is present; callers that
   * have not verified all signatures on the event must supply a real check.
   */
  isSignedBy?: (pdu: Pdu, serverName: string) => boolean;
  /** Event ID of an event in the auth state. Default: computed from the event per the room version. */
  eventIdOf?: (pdu: Pdu) => string;
  /** Set to false to reject every invite made through a third-party invite. Default: true. */
  allowThirdPartyInvites?: boolean;
}

export const ALLOW: AuthResult = Object.freeze({ allowed: true });

export function deny(reason: string): AuthResult {
  return { allowed: false, reason };
}
