/**
 * Profile propagation, as Synapse's ProfileHandler._update_join_states: after a user changes their display name
 * or avatar URL, a new m.room.member join event carrying the new profile is sent into every room they are joined
 * to. Each room is best effort: a failure is logged and the next room is tried; the profile request never fails.
 */
import type { Logger } from 'pino';
import type { RoomWriter } from '../input/room-writer.js';
import { lookupIn } from '../input/room-head.js';
import { canonicalJson } from '../rooms/canonical-json.js';
import type { JsonObject } from '../rooms/event.js';
import type { Storage } from '../storage/db.js';

export interface PropagatedProfile {
  displayname: string | null;
  avatar_url: string | null;
}

export interface ProfilePropagationDeps {
  storage: Storage;
  writer: RoomWriter;
  log: Pick<Logger, 'warn'>;
}

/** The member content with the new profile; other keys stay, a stale restricted-join authoriser is dropped. */
export function updatedMemberContent(current: JsonObject, profile: PropagatedProfile): JsonObject {
  const content: JsonObject = { ...current, membership: 'join' };
  delete content.join_authorised_via_users_server;
  for (const field of ['displayname', 'avatar_url'] as const) {
    const value = profile[field];
    if (value === null) delete content[field];
    else content[field] = value;
  }
  return content;
}

async function joinedRoomIds(storage: Storage, userId: string): Promise<string[]> {
  const rows = await storage.db
    .selectFrom('room_members as m')
    .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
    .select('r.room_id')
    .where('m.user_id', '=', userId)
    .where('m.membership', '=', 'join')
    .orderBy('m.room_nid')
    .execute();
  return rows.map((r) => r.room_id);
}

/** The hook for ProfileDeps.onProfileChange. */
export function profilePropagation(
  deps: ProfilePropagationDeps,
): (userId: string, profile: PropagatedProfile) => Promise<void> {
  return async (userId, profile) => {
    let roomIds: string[];
    try {
      roomIds = await joinedRoomIds(deps.storage, userId);
    } catch (err) {
      deps.log.warn({ err, userId }, 'profile propagation: could not list joined rooms');
      return;
    }
    for (const roomId of roomIds) {
      try {
        const head = await deps.writer.head(roomId);
        const current = head && lookupIn(head.state)('m.room.member', userId);
        if (!current || current.content.membership !== 'join') continue;
        const content = updatedMemberContent(current.content, profile);
        if (canonicalJson(content) === canonicalJson(current.content)) continue;
        await deps.writer.send(roomId, { type: 'm.room.member', state_key: userId, sender: userId, content });
      } catch (err) {
        deps.log.warn({ err, userId, roomId }, 'profile propagation: could not update the member event');
      }
    }
  };
}
