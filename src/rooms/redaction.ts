/** The redaction algorithm of each room version (rooms/fragments/v*-redactions.md). */

import type { JsonObject } from './event.js';
import { getRoomVersion, type RedactionAlgorithm, type RoomVersion } from './room-versions.js';

const TOP_LEVEL_V1 = [
  'event_id',
  'type',
  'room_id',
  'sender',
  'state_key',
  'content',
  'hashes',
  'signatures',
  'depth',
  'prev_events',
  'prev_state',
  'auth_events',
  'origin',
  'origin_server_ts',
  'membership',
];

/** v11 drops `origin`, `membership` and `prev_state`. */
const TOP_LEVEL_V11 = TOP_LEVEL_V1.filter((k) => k !== 'origin' && k !== 'membership' && k !== 'prev_state');

const POWER_LEVELS_V1 = [
  'ban',
  'events',
  'events_default',
  'kick',
  'redact',
  'state_default',
  'users',
  'users_default',
];

/** Content keys kept per event type; `'*'` keeps the whole content. */
type ContentRules = Record<string, readonly string[] | '*'>;

const CONTENT_V1: ContentRules = {
  'm.room.member': ['membership'],
  'm.room.create': ['creator'],
  'm.room.join_rules': ['join_rule'],
  'm.room.power_levels': POWER_LEVELS_V1,
  'm.room.aliases': ['aliases'],
  'm.room.history_visibility': ['history_visibility'],
};

const CONTENT_V6: ContentRules = Object.fromEntries(
  Object.entries(CONTENT_V1).filter(([type]) => type !== 'm.room.aliases'),
);

const CONTENT_V8: ContentRules = { ...CONTENT_V6, 'm.room.join_rules': ['join_rule', 'allow'] };

const CONTENT_V9: ContentRules = {
  ...CONTENT_V8,
  'm.room.member': ['membership', 'join_authorised_via_users_server'],
};

const CONTENT_V11: ContentRules = {
  ...CONTENT_V9,
  'm.room.create': '*',
  'm.room.power_levels': [...POWER_LEVELS_V1, 'invite'],
  'm.room.redaction': ['redacts'],
};

const CONTENT_RULES: Record<RedactionAlgorithm, ContentRules> = {
  v1: CONTENT_V1,
  v6: CONTENT_V6,
  v8: CONTENT_V8,
  v9: CONTENT_V9,
  v11: CONTENT_V11,
};

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function redactContent(type: unknown, content: unknown, algorithm: RedactionAlgorithm): JsonObject {
  const src = isObject(content) ? content : {};
  const rules = CONTENT_RULES[algorithm];
  const allowed = typeof type === 'string' ? rules[type] : undefined;
  if (allowed === '*') return { ...src };
  const out: JsonObject = {};
  if (allowed) {
    for (const key of allowed) if (key in src) out[key] = src[key];
  }
  if (algorithm === 'v11' && type === 'm.room.member') {
    // v11: keep only the `signed` key of `third_party_invite`.
    const tpi = src['third_party_invite'];
    if (isObject(tpi) && 'signed' in tpi) out['third_party_invite'] = { signed: tpi['signed'] };
  }
  return out;
}

/**
 * Redact an event (PDU or any event-shaped JSON object) per the room version's algorithm. Returns a new
 * object; the input is not modified. `unsigned` is stripped, as are all non-essential keys.
 */
export function redact<T extends object>(event: T, version: string | RoomVersion): JsonObject {
  const algorithm = getRoomVersion(version).redaction;
  const src = event as JsonObject;
  const keep = algorithm === 'v11' ? TOP_LEVEL_V11 : TOP_LEVEL_V1;
  const out: JsonObject = {};
  for (const key of keep) {
    if (key in src && src[key] !== undefined) out[key] = src[key];
  }
  out['content'] = redactContent(src['type'], src['content'], algorithm);
  return out;
}
