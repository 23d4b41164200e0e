/**
 * Push rule evaluation (client-server API, push module "Push Rules"): the actions of the first enabled rule of a
 * user's ruleset that matches an event, in override, content, room, sender, underride order. Pure: the caller
 * supplies the room facts the conditions need (member count, display name, power levels).
 */
import type { PushAction, PushCondition, PushRule, PushRuleset } from './default-rules.js';
import { PUSH_RULE_KINDS } from './default-rules.js';

export interface PushContext {
  /** Joined members of the room. */
  memberCount: number;
  /** The user's display name in the room, if any. */
  displayName: string | null;
  /** The sender's power level. */
  senderPowerLevel: number;
  /** The `notifications` object of the room's power levels (`room` defaults to 50). */
  notificationPowerLevels: Record<string, number>;
}

export interface PushOutcome {
  notify: boolean;
  highlight: boolean;
  sound?: string;
  actions: PushAction[];
  ruleId: string;
}

/** The power levels a push evaluation needs, from m.room.power_levels content (or none). */
export function pushPowerLevels(
  powerLevels: Record<string, unknown> | undefined,
  sender: string,
  creators: readonly string[] = [],
): Pick<PushContext, 'senderPowerLevel' | 'notificationPowerLevels'> {
  const num = (v: unknown): number | undefined =>
    typeof v === 'number' && Number.isFinite(v)
      ? v
      : typeof v === 'string' && /^-?\d+$/.test(v.trim())
        ? Number(v)
        : undefined;
  if (creators.includes(sender)) {
    // Room versions 12+: creators have infinite power.
    return {
      senderPowerLevel: Number.MAX_SAFE_INTEGER,
      notificationPowerLevels: notificationLevels(powerLevels, num),
    };
  }
  if (!powerLevels) {
    return { senderPowerLevel: 0, notificationPowerLevels: { room: 50 } };
  }
  const users = powerLevels.users;
  const fromUsers =
    users && typeof users === 'object' ? num((users as Record<string, unknown>)[sender]) : undefined;
  return {
    senderPowerLevel: fromUsers ?? num(powerLevels.users_default) ?? 0,
    notificationPowerLevels: notificationLevels(powerLevels, num),
  };
}

function notificationLevels(
  powerLevels: Record<string, unknown> | undefined,
  num: (v: unknown) => number | undefined,
): Record<string, number> {
  const out: Record<string, number> = { room: 50 };
  const n = powerLevels?.notifications;
  if (n && typeof n === 'object') {
    for (const [k, v] of Object.entries(n as Record<string, unknown>)) {
      const level = num(v);
      if (level !== undefined) out[k] = level;
    }
  }
  return out;
}

/** Splits a dot-separated property path (`\.` is a literal dot, `\\` a literal backslash). */
export function splitPath(key: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c === '\\' && (key[i + 1] === '.' || key[i + 1] === '\\')) {
      cur += key[i + 1];
      i++;
    } else if (c === '.') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}

const MISSING = Symbol('missing');

function lookup(event: unknown, key: string): unknown {
  let cur: unknown = event;
  for (const part of splitPath(key)) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return MISSING;
    if (!Object.prototype.hasOwnProperty.call(cur, part)) return MISSING;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

const globCache = new Map<string, RegExp>();

function globSource(pattern: string): string {
  let src = '';
  for (const c of pattern) {
    if (c === '*') src += '.*?';
    else if (c === '?') src += '.';
    else src += c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  }
  return src;
}

/** A glob matching the entire value, or (`words`) any substring starting and ending at word boundaries. */
function globRegex(pattern: string, words: boolean): RegExp {
  const cacheKey = `${words ? 'w' : 'v'}:${pattern}`;
  let re = globCache.get(cacheKey);
  if (!re) {
    const src = globSource(pattern);
    re = words
      ? new RegExp(`(?:^|[^A-Za-z0-9_])${src}(?:[^A-Za-z0-9_]|$)`, 'is')
      : new RegExp(`^${src}$`, 'is');
    if (globCache.size > 5000) globCache.clear();
    globCache.set(cacheKey, re);
  }
  return re;
}

/** A glob match of `pattern` against `value`; `words` for content.body semantics. */
export function globMatches(pattern: string, value: string, words = false): boolean {
  return globRegex(pattern, words).test(value);
}

function isScalar(v: unknown): boolean {
  return (
    v === null ||
    typeof v === 'string' ||
    typeof v === 'boolean' ||
    (typeof v === 'number' && Number.isSafeInteger(v))
  );
}

function memberCountMatches(is: unknown, count: number): boolean {
  if (typeof is !== 'string') return false;
  const m = /^(==|<=|>=|<|>)?\s*(\d+)$/.exec(is.trim());
  if (!m) return false;
  const n = Number(m[2]);
  switch (m[1] ?? '==') {
    case '==':
      return count === n;
    case '<':
      return count < n;
    case '>':
      return count > n;
    case '<=':
      return count <= n;
    default:
      return count >= n;
  }
}

function conditionMatches(c: PushCondition, event: Record<string, unknown>, ctx: PushContext): boolean {
  switch (c.kind) {
    case 'event_match': {
      if (typeof c.key !== 'string' || typeof c.pattern !== 'string') return false;
      const v = lookup(event, c.key);
      if (typeof v !== 'string') return false;
      return globMatches(c.pattern, v, c.key === 'content.body');
    }
    case 'event_property_is': {
      if (typeof c.key !== 'string' || !isScalar(c.value)) return false;
      const v = lookup(event, c.key);
      return v !== MISSING && isScalar(v) && v === c.value;
    }
    case 'event_property_contains': {
      if (typeof c.key !== 'string' || !isScalar(c.value)) return false;
      const v = lookup(event, c.key);
      return Array.isArray(v) && v.some((x) => isScalar(x) && x === c.value);
    }
    case 'contains_display_name': {
      const name = ctx.displayName;
      if (!name) return false;
      const body = lookup(event, 'content.body');
      if (typeof body !== 'string') return false;
      const escaped = name.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
      return new RegExp(`(?:^|[^A-Za-z0-9_])${escaped}(?:[^A-Za-z0-9_]|$)`, 'i').test(body);
    }
    case 'room_member_count':
      return memberCountMatches(c.is, ctx.memberCount);
    case 'sender_notification_permission': {
      if (typeof c.key !== 'string') return false;
      const required = ctx.notificationPowerLevels[c.key] ?? 50;
      return ctx.senderPowerLevel >= required;
    }
    default:
      // Unknown conditions never match (spec: servers must not match rules with conditions they don't know).
      return false;
  }
}

function ruleMatches(
  rule: PushRule,
  kind: string,
  event: Record<string, unknown>,
  ctx: PushContext,
): boolean {
  switch (kind) {
    case 'content': {
      if (typeof rule.pattern !== 'string') return false;
      const body = lookup(event, 'content.body');
      return typeof body === 'string' && globMatches(rule.pattern, body, true);
    }
    case 'room':
      return event.room_id === rule.rule_id;
    case 'sender':
      return event.sender === rule.rule_id;
    default:
      return (rule.conditions ?? []).every((c) => conditionMatches(c, event, ctx));
  }
}

/** What a rule's actions mean for a notification. */
export function outcomeOf(actions: PushAction[], ruleId: string): PushOutcome {
  let notify = false;
  let highlight = false;
  let sound: string | undefined;
  for (const a of actions) {
    if (a === 'notify') notify = true;
    else if (typeof a === 'object') {
      if (a.set_tweak === 'highlight') highlight = a.value === undefined ? true : a.value === true;
      else if (a.set_tweak === 'sound' && typeof a.value === 'string') sound = a.value;
    }
  }
  const out: PushOutcome = { notify, highlight, actions, ruleId };
  if (sound !== undefined) out.sound = sound;
  return out;
}

/**
 * The outcome of the first enabled rule that matches `event` (client format), or undefined when none does (no
 * notification).
 */
export function evaluatePushRules(
  event: Record<string, unknown>,
  ctx: PushContext,
  rules: PushRuleset,
): PushOutcome | undefined {
  for (const kind of PUSH_RULE_KINDS) {
    for (const rule of rules[kind] ?? []) {
      if (!rule.enabled) continue;
      if (ruleMatches(rule, kind, event, ctx)) return outcomeOf(rule.actions, rule.rule_id);
    }
  }
  return undefined;
}
