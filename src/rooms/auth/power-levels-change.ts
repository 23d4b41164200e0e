/** Auth rules for `m.room.power_levels` events (rule "If type is m.room.power_levels"). */

import type { JsonObject, Pdu } from '../event.js';
import type { RoomVersion } from '../room-versions.js';
import {
  isAuthValidUserId,
  isValidPowerLevelValue,
  parsePowerLevel,
  powerLevelsContent,
  roomCreators,
  userPowerLevel,
} from './power-levels.js';
import { ALLOW, deny, type AuthResult, type StateLookup } from './types.js';

const SCALAR_KEYS = ['users_default', 'events_default', 'state_default', 'ban', 'redact', 'kick', 'invite'];

function asObject(v: unknown): JsonObject | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

function isStrictInteger(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

/** Structural checks on the new content (rules 10.1-10.4 of v12; 10.1-10.2 are v10+). */
function checkShape(content: JsonObject, lookup: StateLookup, v: RoomVersion): AuthResult {
  if (!v.stringPowerLevels) {
    for (const key of SCALAR_KEYS) {
      if (key in content && !isStrictInteger(content[key]))
        return deny(`Power level "${key}" must be an integer`);
    }
    for (const key of ['events', 'notifications']) {
      if (!(key in content)) continue;
      const obj = asObject(content[key]);
      if (!obj) return deny(`Power levels "${key}" must be an object`);
      for (const [k, val] of Object.entries(obj)) {
        if (!isStrictInteger(val)) return deny(`Power level for ${key} "${k}" must be an integer`);
      }
    }
  }
  if ('users' in content) {
    const users = asObject(content['users']);
    if (!users) return deny('Power levels "users" must be an object');
    for (const [userId, val] of Object.entries(users)) {
      if (!isAuthValidUserId(userId))
        return deny(`"${userId}" in power levels "users" is not a valid user ID`);
      if (!isValidPowerLevelValue(val, v)) return deny(`Power level of ${userId} must be an integer`);
    }
    if (v.privilegedCreators) {
      for (const creator of roomCreators(lookup('m.room.create', ''), v)) {
        if (Object.hasOwn(users, creator)) {
          return deny(`Room creator ${creator} cannot be given a power level: creators have unlimited power`);
        }
      }
    }
  }
  return ALLOW;
}

type Level = number | undefined;

function parseEntry(obj: JsonObject | undefined, key: string): { ok: boolean; value: Level } {
  if (!obj || !Object.hasOwn(obj, key)) return { ok: true, value: undefined };
  const value = parsePowerLevel(obj[key]);
  return { ok: value !== undefined, value };
}

function fmt(n: number): string {
  return n === Infinity ? 'creator' : String(n);
}

/** Rule "If type is m.room.power_levels" for the given room version. */
export function checkPowerLevelsEvent(pdu: Pdu, lookup: StateLookup, v: RoomVersion): AuthResult {
  const shape = checkShape(pdu.content, lookup, v);
  if (!shape.allowed) return shape;
  const current = powerLevelsContent(lookup);
  if (!current) return ALLOW;
  const next = pdu.content;
  const senderLevel = userPowerLevel(pdu.sender, lookup, v);
  const tooHigh = (what: string, value: number): AuthResult =>
    deny(`You cannot change ${what} to or from ${value}: it is above your power level (${fmt(senderLevel)})`);

  for (const key of SCALAR_KEYS) {
    const before = parseEntry(current, key);
    const after = parseEntry(next, key);
    if (!before.ok || !after.ok) return deny(`Power level "${key}" is not a valid integer`);
    if (before.value === after.value) continue;
    if (before.value !== undefined && before.value > senderLevel) return tooHigh(`"${key}"`, before.value);
    if (after.value !== undefined && after.value > senderLevel) return tooHigh(`"${key}"`, after.value);
  }

  const maps = v.notificationsPowerLevels ? ['events', 'notifications'] : ['events'];
  for (const mapKey of maps) {
    const before = asObject(current[mapKey]);
    const after = asObject(next[mapKey]);
    const keys = new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})]);
    for (const key of keys) {
      const b = parseEntry(before, key);
      const a = parseEntry(after, key);
      if (!b.ok || !a.ok) return deny(`Power level for ${mapKey} "${key}" is not a valid integer`);
      if (b.value === a.value) continue;
      if (b.value !== undefined && b.value > senderLevel) return tooHigh(`${mapKey} "${key}"`, b.value);
      if (a.value !== undefined && a.value > senderLevel) return tooHigh(`${mapKey} "${key}"`, a.value);
    }
  }

  const beforeUsers = asObject(current['users']);
  const afterUsers = asObject(next['users']);
  const userIds = new Set([...Object.keys(beforeUsers ?? {}), ...Object.keys(afterUsers ?? {})]);
  for (const userId of userIds) {
    const b = parseEntry(beforeUsers, userId);
    const a = parseEntry(afterUsers, userId);
    if (!b.ok || !a.ok) return deny(`Power level of ${userId} is not a valid integer`);
    if (b.value === a.value) continue;
    if (userId !== pdu.sender && b.value !== undefined && b.value >= senderLevel) {
      return deny(
        `You cannot change the power level of ${userId}: it is not lower than yours (${fmt(senderLevel)})`,
      );
    }
    if (a.value !== undefined && a.value > senderLevel) {
      return deny(
        `You cannot give ${userId} power level ${a.value}: it is above yours (${fmt(senderLevel)})`,
      );
    }
  }
  return ALLOW;
}
