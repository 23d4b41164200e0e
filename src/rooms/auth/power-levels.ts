/** Power level lookups (server-server API "Definitions": required power level, invite/kick/ban/redact levels). */

import type { JsonObject, Pdu } from '../event.js';
import { isValidUserId } from '../identifiers.js';
import { getRoomVersion, type RoomVersion } from '../room-versions.js';
import type { StateLookup } from './types.js';

const STRINGY_INT = /^\s*[+-]?[0-9]+\s*$/;

/**
 * Interpret a power level value leniently, as room versions 1-9 allow: integers, strings holding an
 * integer (`" +050 "`), and floats (truncated). Returns `undefined` for anything else.
 */
export function parsePowerLevel(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? Math.trunc(value) : undefined;
  if (typeof value === 'string' && STRINGY_INT.test(value)) return Number.parseInt(value.trim(), 10);
  return undefined;
}

/** Whether a power level value is acceptable in a new power levels event of this room version. */
export function isValidPowerLevelValue(value: unknown, version: string | RoomVersion): boolean {
  const v = getRoomVersion(version);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return false;
    return Number.isInteger(value) || v.floatPowerLevels;
  }
  if (typeof value === 'string') return v.stringPowerLevels && STRINGY_INT.test(value);
  return false;
}

function asObject(v: unknown): JsonObject | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

export function powerLevelsContent(lookup: StateLookup): JsonObject | undefined {
  return lookup('m.room.power_levels', '')?.content;
}

/** A top-level level of the power levels content (`ban`, `kick`, ...) with its default. */
export function levelOf(content: JsonObject | undefined, key: string, fallback: number): number {
  return parsePowerLevel(content?.[key]) ?? fallback;
}

/**
 * The room creators. v1-v10: `content.creator` of the create event; v11: its `sender`; v12+: its `sender`
 * plus `content.additional_creators`.
 */
export function roomCreators(create: Pdu | undefined, version: string | RoomVersion): Set<string> {
  const v = getRoomVersion(version);
  const creators = new Set<string>();
  if (!create) return creators;
  if (v.creatorInContent) {
    const c = create.content['creator'];
    if (typeof c === 'string') creators.add(c);
    return creators;
  }
  creators.add(create.sender);
  if (v.privilegedCreators) {
    const extra = create.content['additional_creators'];
    if (Array.isArray(extra)) for (const u of extra) if (typeof u === 'string') creators.add(u);
  }
  return creators;
}

/**
 * A user's power level. v12+: room creators have infinite power (`Infinity`). Otherwise `users[userId]`,
 * else `users_default` (default 0); with no power levels event, the creator has 100 (v1-v11) and everyone
 * else 0.
 */
export function userPowerLevel(userId: string, lookup: StateLookup, version: string | RoomVersion): number {
  const v = getRoomVersion(version);
  const create = lookup('m.room.create', '');
  if (v.privilegedCreators && roomCreators(create, v).has(userId)) return Infinity;
  const content = powerLevelsContent(lookup);
  if (!content) return roomCreators(create, v).has(userId) ? 100 : 0;
  const users = asObject(content['users']);
  const own = users && Object.hasOwn(users, userId) ? parsePowerLevel(users[userId]) : undefined;
  return own ?? levelOf(content, 'users_default', 0);
}

/**
 * The level required to send an event of this type: `events[type]`, else `state_default` (default 50)
 * for state events or `events_default` (default 0) for others.
 */
export function requiredPowerLevel(eventType: string, isState: boolean, lookup: StateLookup): number {
  const content = powerLevelsContent(lookup);
  const events = asObject(content?.['events']);
  const specific =
    events && Object.hasOwn(events, eventType) ? parsePowerLevel(events[eventType]) : undefined;
  if (specific !== undefined) return specific;
  return isState ? levelOf(content, 'state_default', 50) : levelOf(content, 'events_default', 0);
}

export function inviteLevel(lookup: StateLookup): number {
  return levelOf(powerLevelsContent(lookup), 'invite', 0);
}

export function kickLevel(lookup: StateLookup): number {
  return levelOf(powerLevelsContent(lookup), 'kick', 50);
}

export function banLevel(lookup: StateLookup): number {
  return levelOf(powerLevelsContent(lookup), 'ban', 50);
}

export function redactLevel(lookup: StateLookup): number {
  return levelOf(powerLevelsContent(lookup), 'redact', 50);
}

/** The level needed for a notification type, e.g. `room` for `@room` (default 50). */
export function notificationLevel(key: string, lookup: StateLookup): number {
  const notifications = asObject(powerLevelsContent(lookup)?.['notifications']);
  const v =
    notifications && Object.hasOwn(notifications, key) ? parsePowerLevel(notifications[key]) : undefined;
  return v ?? 50;
}

/** A membership from the state (`join`, `invite`, ...) or `undefined` if the user has no member event. */
export function membershipOf(userId: string, lookup: StateLookup): string | undefined {
  const m = lookup('m.room.member', userId)?.content['membership'];
  return typeof m === 'string' ? m : undefined;
}

/** The join rule, defaulting to `invite` when there is no (valid) `m.room.join_rules` event. */
export function joinRuleOf(lookup: StateLookup): string {
  const r = lookup('m.room.join_rules', '')?.content['join_rule'];
  return typeof r === 'string' ? r : 'invite';
}

/** Lenient user ID check used by the auth rules (historical localparts accepted, as over federation). */
export function isAuthValidUserId(userId: string): boolean {
  return isValidUserId(userId, { historical: true });
}
