export { authEventTypesFor, checkAuthEvents, selectAuthEventIds } from './auth-events.js';
export type { AuthEventsTemplate, StateKey } from './auth-events.js';
export { checkEventAuth, redactionAllowed } from './check.js';
export {
  banLevel,
  inviteLevel,
  isValidPowerLevelValue,
  joinRuleOf,
  kickLevel,
  membershipOf,
  notificationLevel,
  parsePowerLevel,
  redactLevel,
  requiredPowerLevel,
  roomCreators,
  userPowerLevel,
} from './power-levels.js';
export { thirdPartyInvitePublicKeys, verifySignedThirdPartyInvite } from './third-party-invite.js';
export type { AuthOptions, AuthResult, StateLookup } from './types.js';
