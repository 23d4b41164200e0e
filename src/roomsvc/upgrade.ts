/**
 * Room upgrades (client-server API "Room Upgrades"), as Synapse's RoomCreationHandler.upgrade_room:
 *
 * 1. the user must be able to send m.room.tombstone in the old room;
 * 2. the new room copies the relevant state (power levels with the upgrader raised far enough to send it all,
 *    join rules, history visibility, guest access, name, topic, avatar, encryption, server ACL, space children),
 *    the room type and `m.federate`, and names its predecessor; bans are copied;
 * 3. the tombstone is sent in the old room;
 * 4. local aliases, the canonical alias and the directory listing move to the new room;
 * 5. the old room's power levels are restricted (events_default and invite to max(50, users_default + 1)) and
 *    the new room's are restored to the old room's.
 *
 * The writer picks the new room's id when it writes the create event, so `predecessor.event_id` names the last
 * event of the old room before the tombstone (room versions before 12; v12 rooms carry only `room_id`, as
 * Synapse does).
 */
import type { Logger } from 'pino';
import { MatrixError } from '../api/errors.js';
import { lookupIn, type RoomHead } from '../input/room-head.js';
import type { NewEvent, RoomWriter } from '../input/room-writer.js';
import {
  membershipOf,
  parsePowerLevel,
  requiredPowerLevel,
  roomCreators,
  userPowerLevel,
} from '../rooms/auth/power-levels.js';
import type { JsonObject } from '../rooms/event.js';
import { isValidUserId } from '../rooms/identifiers.js';
import { findRoomVersion, type RoomVersion } from '../rooms/room-versions.js';
import type { Storage } from '../storage/db.js';
import { memberContent } from './create-room.js';
import { setRoomPublic } from './directory.js';

export interface UpgradeDeps {
  storage: Storage;
  writer: RoomWriter;
  serverName: string;
  log: Pick<Logger, 'warn'>;
}

const COPIED_STATE = [
  'm.room.join_rules',
  'm.room.history_visibility',
  'm.room.guest_access',
  'm.room.name',
  'm.room.topic',
  'm.room.avatar',
  'm.room.encryption',
  'm.room.server_acl',
];

/** Synapse's copy_and_fixup_power_levels_contents: integer levels only, nested maps copied. */
export function fixupPowerLevels(content: JsonObject | undefined): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(content ?? {})) {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const inner: JsonObject = {};
      for (const [ik, iv] of Object.entries(v as JsonObject)) {
        const n = parsePowerLevel(iv);
        if (n !== undefined) inner[ik] = n;
      }
      out[k] = inner;
    } else {
      const n = parsePowerLevel(v);
      if (n !== undefined) out[k] = n;
    }
  }
  return out;
}

function usersOf(pl: JsonObject): Record<string, number> {
  const users = pl.users;
  if (typeof users === 'object' && users !== null && !Array.isArray(users)) {
    return users as Record<string, number>;
  }
  const fresh: Record<string, number> = {};
  pl.users = fresh;
  return fresh;
}

/** The highest level any state event needs (Synapse: max of state_default, ban and every `events` level). */
function neededLevel(pl: JsonObject): number {
  const events = typeof pl.events === 'object' && pl.events !== null ? Object.values(pl.events) : [];
  const levels = [pl.state_default ?? 50, pl.ban ?? 50, ...events].map((v) => parsePowerLevel(v) ?? 0);
  return Math.max(0, ...levels);
}

export class RoomUpgrader {
  #inProgress = new Set<string>();

  constructor(private readonly deps: UpgradeDeps) {}

  async upgrade(
    userId: string,
    oldRoomId: string,
    newVersionId: string,
    additionalCreators: string[] = [],
  ): Promise<string> {
    const version = findRoomVersion(newVersionId);
    if (!version) {
      throw new MatrixError('M_UNSUPPORTED_ROOM_VERSION', 'This server does not support that room version');
    }
    for (const u of additionalCreators) {
      if (!isValidUserId(u, { historical: true })) {
        throw new MatrixError('M_INVALID_PARAM', `Invalid user id in additional_creators: ${u}`);
      }
    }
    const head = await this.deps.writer.head(oldRoomId);
    if (!head) throw new MatrixError('M_NOT_FOUND', `Unknown room id ${oldRoomId}`);
    const lookup = lookupIn(head.state);
    if (membershipOf(userId, lookup) !== 'join') {
      throw new MatrixError('M_FORBIDDEN', `${userId} is not in the room`);
    }
    const needed = requiredPowerLevel('m.room.tombstone', true, lookup);
    if (userPowerLevel(userId, lookup, head.version) < needed) {
      throw new MatrixError('M_FORBIDDEN', 'You do not have permission to upgrade this room');
    }
    if (this.#inProgress.has(oldRoomId)) {
      throw new MatrixError('M_UNKNOWN', 'An upgrade for this room is currently in progress', {}, 400);
    }
    this.#inProgress.add(oldRoomId);
    try {
      return await this.#upgrade(head, userId, version, additionalCreators);
    } finally {
      this.#inProgress.delete(oldRoomId);
    }
  }

  async #upgrade(
    old: RoomHead,
    userId: string,
    version: RoomVersion,
    additionalCreators: string[],
  ): Promise<string> {
    const { writer } = this.deps;
    const lookup = lookupIn(old.state);
    const create = lookup('m.room.create', '');
    const creation: JsonObject = { predecessor: { room_id: old.roomId } };
    const lastEvent = [...old.extremities].sort((a, b) => b.depth - a.depth)[0];
    if (!version.roomIdFromCreateEvent && lastEvent) {
      creation.predecessor = { room_id: old.roomId, event_id: lastEvent.eventId };
    }
    if (create?.content['m.federate'] === false) creation['m.federate'] = false;
    const roomType = create?.content.type;
    if (typeof roomType === 'string') creation.type = roomType;
    const newCreators = new Set([userId]);
    if (version.privilegedCreators && additionalCreators.length > 0) {
      creation.additional_creators = [...new Set(additionalCreators)].filter((u) => u !== userId);
      for (const u of additionalCreators) newCreators.add(u);
    }

    // The power levels to end with: the old room's, with the old room's v12 creators given 100 (they lose their
    // unlimited power), and the new room's creators taken out when the new version makes them all-powerful.
    const restored = fixupPowerLevels(lookup('m.room.power_levels', '')?.content);
    if (old.version.privilegedCreators) {
      for (const c of roomCreators(create, old.version)) usersOf(restored)[c] = 100;
    }
    if (version.privilegedCreators) for (const c of newCreators) delete usersOf(restored)[c];
    const initial = structuredClone(restored);
    if (!version.privilegedCreators) {
      const users = usersOf(initial);
      const current = users[userId] ?? parsePowerLevel(initial.users_default) ?? 0;
      if (current < neededLevel(initial)) users[userId] = neededLevel(initial);
    }

    const copied: NewEvent[] = [];
    const state = (type: string, content: JsonObject, stateKey = ''): void => {
      copied.push({ type, state_key: stateKey, sender: userId, content });
    };
    for (const type of COPIED_STATE) {
      const content = lookup(type, '')?.content;
      if (content) state(type, content);
    }
    if (roomType === 'm.space') {
      for (const e of old.state.values()) {
        if (e.pdu.type !== 'm.space.child' || Object.keys(e.pdu.content).length === 0) continue;
        state('m.space.child', e.pdu.content, e.pdu.state_key ?? '');
      }
    }
    const join = await memberContent(this.deps.storage, userId, 'join');
    const { roomId: newRoomId } = await writer.createRoom(version.id, userId, creation, () => [
      { type: 'm.room.member', state_key: userId, sender: userId, content: join },
      { type: 'm.room.power_levels', state_key: '', sender: userId, content: initial },
      ...copied,
    ]);

    for (const e of old.state.values()) {
      if (e.pdu.type !== 'm.room.member' || e.pdu.content.membership !== 'ban') continue;
      const content: JsonObject = { membership: 'ban' };
      if (typeof e.pdu.content.reason === 'string') content.reason = e.pdu.content.reason;
      const target = e.pdu.state_key ?? '';
      await this.#best(`copy the ban of ${target}`, () =>
        writer.send(newRoomId, { type: 'm.room.member', state_key: target, sender: userId, content }),
      );
    }

    await writer.send(old.roomId, {
      type: 'm.room.tombstone',
      state_key: '',
      sender: userId,
      content: { body: 'This room has been replaced', replacement_room: newRoomId },
    });

    await this.#moveAliases(old, newRoomId, userId);
    const listed = await this.deps.storage.db
      .selectFrom('rooms')
      .select('is_public')
      .where('room_id', '=', old.roomId)
      .executeTakeFirst();
    if (Number(listed?.is_public ?? 0) === 1) {
      await setRoomPublic(this.deps.storage, old.roomId, false);
      await setRoomPublic(this.deps.storage, newRoomId, true);
    }

    await this.#restrictOldRoom(old, userId);
    await this.#best('restore the power levels in the new room', () =>
      writer.send(newRoomId, {
        type: 'm.room.power_levels',
        state_key: '',
        sender: userId,
        content: restored,
      }),
    );
    return newRoomId;
  }

  /** Local aliases point at the new room; the canonical alias (and local alt aliases) move with them. */
  async #moveAliases(old: RoomHead, newRoomId: string, userId: string): Promise<void> {
    await this.deps.storage.db
      .updateTable('room_aliases')
      .set({ room_id: newRoomId })
      .where('room_id', '=', old.roomId)
      .execute();
    const canonical = lookupIn(old.state)('m.room.canonical_alias', '')?.content;
    if (!canonical) return;
    const isLocal = (a: unknown): a is string =>
      typeof a === 'string' && a.endsWith(`:${this.deps.serverName}`);
    const oldContent: JsonObject = { ...canonical };
    const newContent: JsonObject = {};
    if (isLocal(canonical.alias)) {
      newContent.alias = canonical.alias;
      delete oldContent.alias;
    }
    if (Array.isArray(canonical.alt_aliases) && canonical.alt_aliases.length > 0) {
      newContent.alt_aliases = canonical.alt_aliases.filter(isLocal);
      oldContent.alt_aliases = canonical.alt_aliases.filter((a) => !isLocal(a));
    }
    const send = (roomId: string, content: JsonObject) => () =>
      this.deps.writer.send(roomId, {
        type: 'm.room.canonical_alias',
        state_key: '',
        sender: userId,
        content,
      });
    await this.#best('update the canonical alias in the old room', send(old.roomId, oldContent));
    await this.#best('set the canonical alias in the new room', send(newRoomId, newContent));
  }

  /** Synapse's _update_upgraded_room_pls for the old room: only moderators may still talk or invite. */
  async #restrictOldRoom(old: RoomHead, userId: string): Promise<void> {
    const current = lookupIn(old.state)('m.room.power_levels', '')?.content;
    if (!current) return;
    const pl = fixupPowerLevels(current);
    const restricted = Math.max(50, (parsePowerLevel(pl.users_default) ?? 0) + 1);
    let updated = false;
    for (const key of ['invite', 'events_default']) {
      if ((parsePowerLevel(pl[key]) ?? 0) < restricted) {
        pl[key] = restricted;
        updated = true;
      }
    }
    if (!updated) return;
    await this.#best('restrict the power levels in the old room', () =>
      this.deps.writer.send(old.roomId, {
        type: 'm.room.power_levels',
        state_key: '',
        sender: userId,
        content: pl,
      }),
    );
  }

  /** Steps Synapse logs and moves past: a failure must not lose the new room the client is told about. */
  async #best(what: string, step: () => Promise<unknown>): Promise<void> {
    try {
      await step();
    } catch (err) {
      this.deps.log.warn({ err }, `room upgrade: could not ${what}`);
    }
  }
}
