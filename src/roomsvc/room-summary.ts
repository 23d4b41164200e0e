/**
 * The public summary of a room (client-server API "PublicRoomsChunk" and "RoomSummary"), computed from the room's
 * current state. Shared by /publicRooms and /hierarchy.
 */
import type { RoomHead } from '../input/room-head.js';
import { lookupIn } from '../input/room-head.js';
import { joinRuleOf } from '../rooms/auth/power-levels.js';
import type { JsonObject } from '../rooms/event.js';

export interface RoomSummary {
  room_id: string;
  name?: string;
  topic?: string;
  canonical_alias?: string;
  num_joined_members: number;
  avatar_url?: string;
  join_rule?: string;
  world_readable: boolean;
  guest_can_join: boolean;
  room_type?: string;
}

/** The extra fields of the hierarchy's RoomSummary. */
export interface FullRoomSummary extends RoomSummary {
  room_version: string;
  encryption?: string;
  allowed_room_ids?: string[];
}

function str(content: JsonObject | undefined, key: string): string | undefined {
  const v = content?.[key];
  return typeof v === 'string' ? v : undefined;
}

export function joinedMemberCount(head: RoomHead): number {
  let n = 0;
  for (const e of head.state.values()) {
    if (e.pdu.type === 'm.room.member' && e.pdu.content.membership === 'join') n += 1;
  }
  return n;
}

export function isWorldReadable(head: RoomHead): boolean {
  const c = lookupIn(head.state)('m.room.history_visibility', '')?.content;
  return str(c, 'history_visibility') === 'world_readable';
}

export function roomTypeOf(head: RoomHead): string | undefined {
  return str(lookupIn(head.state)('m.room.create', '')?.content, 'type');
}

/** The PublicRoomsChunk of a room; absent fields are omitted. */
export function summarizeRoom(head: RoomHead): RoomSummary {
  const lookup = lookupIn(head.state);
  const content = (type: string): JsonObject | undefined => lookup(type, '')?.content;
  const out: RoomSummary = {
    room_id: head.roomId,
    num_joined_members: joinedMemberCount(head),
    world_readable: isWorldReadable(head),
    guest_can_join: str(content('m.room.guest_access'), 'guest_access') === 'can_join',
  };
  const name = str(content('m.room.name'), 'name');
  if (name) out.name = name;
  const topic = str(content('m.room.topic'), 'topic');
  if (topic) out.topic = topic;
  const alias = str(content('m.room.canonical_alias'), 'alias');
  if (alias) out.canonical_alias = alias;
  const avatar = str(content('m.room.avatar'), 'url');
  if (avatar) out.avatar_url = avatar;
  const joinRule = str(content('m.room.join_rules'), 'join_rule');
  if (joinRule) out.join_rule = joinRule;
  const type = roomTypeOf(head);
  if (type !== undefined) out.room_type = type;
  return out;
}

/** Room ids named by `allow` entries of type m.room_membership in a restricted join rule. */
export function allowedRoomIds(head: RoomHead): string[] {
  const rules = lookupIn(head.state)('m.room.join_rules', '')?.content;
  const allow = Array.isArray(rules?.allow) ? (rules.allow as unknown[]) : [];
  const out: string[] = [];
  for (const a of allow) {
    if (typeof a !== 'object' || a === null) continue;
    const entry = a as JsonObject;
    if (entry.type === 'm.room_membership' && typeof entry.room_id === 'string') out.push(entry.room_id);
  }
  return out;
}

/** The RoomSummary of the space hierarchy: the chunk plus version, encryption and restricted-join rooms. */
export function fullSummary(head: RoomHead): FullRoomSummary {
  const out: FullRoomSummary = { ...summarizeRoom(head), room_version: head.version.id };
  const algorithm = str(lookupIn(head.state)('m.room.encryption', '')?.content, 'algorithm');
  if (algorithm) out.encryption = algorithm;
  const rule = joinRuleOf(lookupIn(head.state));
  if (rule === 'restricted' || rule === 'knock_restricted') out.allowed_room_ids = allowedRoomIds(head);
  return out;
}
