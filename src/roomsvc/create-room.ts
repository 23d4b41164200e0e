/**
 * POST /createRoom: the initial events in the order the spec gives (create, creator's join, power levels,
 * canonical alias, preset join rules / history visibility / guest access, initial_state, name, topic, invites).
 */
import { MatrixError } from '../api/errors.js';
import type { NewEvent, RoomWriter } from '../input/room-writer.js';
import type { JsonObject } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import { findRoomVersion } from '../rooms/room-versions.js';
import type { Storage } from '../storage/db.js';
import { getUser } from '../storage/users.js';

export type Preset = 'private_chat' | 'public_chat' | 'trusted_private_chat';

export interface CreateRoomRequest {
  creator: string;
  visibility: 'public' | 'private';
  preset?: Preset | undefined;
  name?: string | undefined;
  topic?: string | undefined;
  roomAlias?: string | undefined;
  invite: string[];
  isDirect: boolean;
  initialState: { type: string; state_key: string; content: JsonObject }[];
  creationContent: JsonObject;
  powerLevelOverride?: JsonObject | undefined;
  roomVersion: string;
}

const PRESETS: Record<Preset, { join_rule: string; history: string; guest: string }> = {
  private_chat: { join_rule: 'invite', history: 'shared', guest: 'can_join' },
  trusted_private_chat: { join_rule: 'invite', history: 'shared', guest: 'can_join' },
  public_chat: { join_rule: 'public', history: 'shared', guest: 'forbidden' },
};

export async function memberContent(
  storage: Storage,
  userId: string,
  membership: string,
  extra: JsonObject = {},
): Promise<JsonObject> {
  const user = await getUser(storage.db, userId);
  const content: JsonObject = { membership };
  if (membership === 'join' || membership === 'invite' || membership === 'knock') {
    if (user?.displayname) content.displayname = user.displayname;
    if (user?.avatar_url) content.avatar_url = user.avatar_url;
  }
  return { ...content, ...extra };
}

function defaultPowerLevels(req: CreateRoomRequest, creatorsPrivileged: boolean, preset: Preset): JsonObject {
  const users: JsonObject = creatorsPrivileged ? {} : { [req.creator]: 100 };
  if (preset === 'trusted_private_chat' && !creatorsPrivileged) for (const u of req.invite) users[u] = 100;
  return {
    users,
    users_default: 0,
    events: {
      'm.room.name': 50,
      'm.room.power_levels': 100,
      'm.room.history_visibility': 100,
      'm.room.canonical_alias': 50,
      'm.room.avatar': 50,
      'm.room.tombstone': 100,
      'm.room.server_acl': 100,
      'm.room.encryption': 100,
    },
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: 50,
    historical: 100,
    notifications: { room: 50 },
  };
}

export interface CreateRoomDeps {
  storage: Storage;
  writer: RoomWriter;
  serverName: string;
  /**
   * Invites a user of another server over federation once the room exists (their server must receive the invite;
   * an invite written into the initial events would stay on this server). Without it every invite is local.
   */
  inviteRemote?: ((roomId: string, userId: string, extra: JsonObject) => Promise<void>) | undefined;
}

export async function createRoom(deps: CreateRoomDeps, req: CreateRoomRequest): Promise<string> {
  const version = findRoomVersion(req.roomVersion);
  if (!version) {
    throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', `Room version ${req.roomVersion} is not supported`);
  }
  const preset: Preset = req.preset ?? (req.visibility === 'public' ? 'public_chat' : 'private_chat');
  const p = PRESETS[preset];
  const creationContent: JsonObject = { ...req.creationContent };
  delete creationContent.room_version;
  if (version.privilegedCreators && preset === 'trusted_private_chat' && req.invite.length > 0) {
    const extra = Array.isArray(creationContent.additional_creators)
      ? creationContent.additional_creators
      : [];
    creationContent.additional_creators = [...new Set([...extra, ...req.invite])];
  }
  if (version.creatorInContent) creationContent.creator = req.creator;
  else delete creationContent.creator;

  const creatorJoin = await memberContent(deps.storage, req.creator, 'join');
  const inviteExtra: JsonObject = req.isDirect ? { is_direct: true } : {};
  const remote = (u: string) => deps.inviteRemote !== undefined && serverNameOf(u) !== deps.serverName;
  const localInvites = req.invite.filter((u) => !remote(u));
  const inviteContents = await Promise.all(
    localInvites.map((u) => memberContent(deps.storage, u, 'invite', inviteExtra)),
  );

  const { roomId } = await deps.writer.createRoom(version.id, req.creator, creationContent, () => {
    const evs: NewEvent[] = [];
    const state = (type: string, content: JsonObject, key = ''): void => {
      evs.push({ type, state_key: key, sender: req.creator, content });
    };
    state('m.room.member', creatorJoin, req.creator);
    state('m.room.power_levels', {
      ...defaultPowerLevels(req, version.privilegedCreators, preset),
      ...req.powerLevelOverride,
    });
    if (req.roomAlias) state('m.room.canonical_alias', { alias: req.roomAlias });
    const initialKeys = new Set(req.initialState.map((s) => `${s.type}\u0000${s.state_key}`));
    const presetState = (type: string, content: JsonObject): void => {
      if (!initialKeys.has(`${type}\u0000`)) state(type, content);
    };
    presetState('m.room.join_rules', { join_rule: p.join_rule });
    presetState('m.room.history_visibility', { history_visibility: p.history });
    presetState('m.room.guest_access', { guest_access: p.guest });
    for (const s of req.initialState) state(s.type, s.content, s.state_key);
    if (req.name !== undefined) state('m.room.name', { name: req.name });
    if (req.topic !== undefined) {
      state('m.room.topic', { topic: req.topic, 'm.topic': [{ mimetype: 'text/plain', body: req.topic }] });
    }
    for (const [i, u] of localInvites.entries()) state('m.room.member', inviteContents[i] as JsonObject, u);
    return evs;
  });
  // As Synapse does, a remote invite that fails fails the request (the room exists by then).
  for (const u of req.invite.filter(remote)) await deps.inviteRemote?.(roomId, u, inviteExtra);
  return roomId;
}
