/**
 * The room alias directory and the published room list's visibility flag, with Synapse's permission rules
 * (synapse/handlers/directory.py): aliases are created by room members, deleted by their creator or a room
 * moderator, and published by a moderator; server admins may always.
 */
import { MatrixError } from '../api/errors.js';
import { lookupIn, type RoomHead } from '../input/room-head.js';
import type { RoomWriter } from '../input/room-writer.js';
import { membershipOf, requiredPowerLevel, userPowerLevel } from '../rooms/auth/power-levels.js';
import type { JsonObject } from '../rooms/event.js';
import { isValidRoomId, parseRoomAlias, serverNameOf } from '../rooms/identifiers.js';
import type { Storage } from '../storage/db.js';
import { isUniqueViolation } from '../storage/dialect.js';
import { isWorldReadable } from './room-summary.js';
import { checkAliasClaim } from '../appservice/claims.js';
import type { AppServiceRegistry } from '../appservice/registration.js';

export interface DirectoryDeps {
  storage: Storage;
  writer: RoomWriter;
  serverName: string;
  /** Asks the alias's server (federation /query/directory); rejects with the remote's HTTP `status` if any. */
  remoteAlias?:
    ((server: string, alias: string) => Promise<{ room_id: string; servers: string[] }>) | undefined;
  /** Application services: their exclusive alias namespaces, and whether one creates an unknown alias on demand. */
  appServices?: AppServiceRegistry | undefined;
  queryAlias?: ((alias: string) => Promise<boolean>) | undefined;
}

export interface Actor {
  userId: string;
  isAdmin: boolean;
  /** Set when an application service acts (its as_token). */
  appServiceId?: string | undefined;
}

/** A syntactically valid alias; `local` also requires it to be on this server (400 M_INVALID_PARAM otherwise). */
export function checkAlias(alias: string, serverName: string, local: boolean): void {
  const parsed = parseRoomAlias(alias);
  if (!parsed) throw new MatrixError('M_INVALID_PARAM', `Invalid room alias: ${alias}`);
  if (local && parsed.serverName !== serverName) {
    throw new MatrixError('M_INVALID_PARAM', 'Room alias must be on this server');
  }
}

/**
 * Synapse's check_can_change_room_list: admins may; others must be joined and able to send
 * m.room.canonical_alias. Not being in the room is 403.
 */
export function canChangeRoomList(head: RoomHead, actor: Actor): boolean {
  if (actor.isAdmin) return true;
  const lookup = lookupIn(head.state);
  if (membershipOf(actor.userId, lookup) !== 'join') {
    throw new MatrixError('M_FORBIDDEN', `${actor.userId} is not in the room`);
  }
  const needed = requiredPowerLevel('m.room.canonical_alias', true, lookup);
  return userPowerLevel(actor.userId, lookup, head.version) >= needed;
}

async function aliasRow(deps: DirectoryDeps, alias: string) {
  return deps.storage.db.selectFrom('room_aliases').selectAll().where('alias', '=', alias).executeTakeFirst();
}

/** PUT /directory/room/{roomAlias}: members of the room (or admins) may map a new local alias to it. */
export async function createAlias(
  deps: DirectoryDeps,
  actor: Actor,
  alias: string,
  roomId: string,
): Promise<void> {
  checkAlias(alias, deps.serverName, true);
  checkAliasClaim(deps.appServices, actor, alias);
  if (!isValidRoomId(roomId)) throw new MatrixError('M_INVALID_PARAM', `Invalid room id: ${roomId}`);
  const head = await deps.writer.head(roomId);
  if (!head) throw new MatrixError('M_NOT_FOUND', 'Room not found');
  // An application service manages the aliases of its namespace without being in the room (as Synapse).
  if (!actor.isAdmin && !actor.appServiceId && membershipOf(actor.userId, lookupIn(head.state)) !== 'join') {
    throw new MatrixError('M_FORBIDDEN', 'You must be in the room to create an alias for it');
  }
  const taken = () => new MatrixError('M_UNKNOWN', `Room alias ${alias} already exists`, {}, 409);
  if (await aliasRow(deps, alias)) throw taken();
  try {
    await deps.storage.db
      .insertInto('room_aliases')
      .values({ alias, room_id: roomId, creator: actor.userId, created_ts: Date.now() })
      .execute();
  } catch (err) {
    if (isUniqueViolation(err)) throw taken();
    throw err;
  }
}

/** The servers to join through: this server first, then the servers of the room's joined members. */
function serversOf(head: RoomHead | undefined, serverName: string): string[] {
  const servers = new Set<string>([serverName]);
  for (const e of head?.state.values() ?? []) {
    if (e.pdu.type !== 'm.room.member' || e.pdu.content.membership !== 'join') continue;
    const server = serverNameOf(e.pdu.state_key ?? '');
    if (server) servers.add(server);
  }
  return [serverName, ...[...servers].filter((s) => s !== serverName).sort()];
}

/** GET /directory/room/{roomAlias}. Another server's alias is asked of that server (404 when it does not know it). */
export async function resolveAlias(
  deps: DirectoryDeps,
  alias: string,
): Promise<{ room_id: string; servers: string[] }> {
  checkAlias(alias, deps.serverName, false);
  const server = serverNameOf(alias);
  if (server !== undefined && server !== deps.serverName && deps.remoteAlias) {
    try {
      return await deps.remoteAlias(server, alias);
    } catch (err) {
      if ((err as { status?: unknown }).status === 404)
        throw new MatrixError('M_NOT_FOUND', `Room alias ${alias} not found`);
      throw new MatrixError(
        'M_UNKNOWN',
        `Cannot resolve ${alias} with ${server}: ${(err as Error).message}`,
        {},
        502,
      );
    }
  }
  let row = await aliasRow(deps, alias);
  if (!row && (await deps.queryAlias?.(alias))) row = await aliasRow(deps, alias);
  if (!row) throw new MatrixError('M_NOT_FOUND', `Room alias ${alias} not found`);
  return { room_id: row.room_id, servers: serversOf(await deps.writer.head(row.room_id), deps.serverName) };
}

/** DELETE /directory/room/{roomAlias}: the alias's creator, a room moderator or an admin. */
export async function deleteAlias(
  deps: DirectoryDeps,
  actor: Actor,
  alias: string,
  log?: (msg: string, err: unknown) => void,
): Promise<void> {
  checkAlias(alias, deps.serverName, false);
  const row = await aliasRow(deps, alias);
  if (!row) throw new MatrixError('M_NOT_FOUND', `Room alias ${alias} not found`);
  const head = await deps.writer.head(row.room_id);
  const allowed =
    row.creator === actor.userId || actor.isAdmin || (head !== undefined && canChangeRoomList(head, actor));
  if (!allowed) throw new MatrixError('M_FORBIDDEN', "You don't have permission to delete the alias");
  await deps.storage.db.deleteFrom('room_aliases').where('alias', '=', alias).execute();
  if (!head) return;
  try {
    await removeFromCanonicalAlias(deps, head, actor.userId, alias);
  } catch (err) {
    // As Synapse: the mapping is gone even when the user may not update m.room.canonical_alias.
    log?.('could not update m.room.canonical_alias after deleting an alias', err);
  }
}

/** Drops `alias` from the room's m.room.canonical_alias (alias and alt_aliases), when it is there. */
async function removeFromCanonicalAlias(
  deps: DirectoryDeps,
  head: RoomHead,
  sender: string,
  alias: string,
): Promise<void> {
  const current = lookupIn(head.state)('m.room.canonical_alias', '')?.content;
  if (!current) return;
  const content: JsonObject = { ...current };
  let changed = false;
  if (content.alias === alias) {
    delete content.alias;
    changed = true;
  }
  if (Array.isArray(content.alt_aliases) && content.alt_aliases.includes(alias)) {
    content.alt_aliases = content.alt_aliases.filter((a) => a !== alias);
    changed = true;
  }
  if (!changed) return;
  await deps.writer.send(head.roomId, {
    type: 'm.room.canonical_alias',
    state_key: '',
    sender,
    content,
  });
}

/**
 * GET /rooms/{roomId}/aliases: joined users, anyone in a world-readable room, and admins (Synapse's
 * check_user_in_room_or_world_readable without departed users: the aliases are current, a departed member
 * would learn ones added after they left); else 403.
 */
export async function localAliases(deps: DirectoryDeps, actor: Actor, roomId: string): Promise<string[]> {
  const head = await deps.writer.head(roomId);
  const membership = head ? membershipOf(actor.userId, lookupIn(head.state)) : undefined;
  const allowed = head !== undefined && (actor.isAdmin || membership === 'join' || isWorldReadable(head));
  if (!allowed) {
    throw new MatrixError(
      'M_FORBIDDEN',
      `User ${actor.userId} not in room ${roomId}, and room previews are disabled`,
    );
  }
  const rows = await deps.storage.db
    .selectFrom('room_aliases')
    .select('alias')
    .where('room_id', '=', roomId)
    .orderBy('alias')
    .execute();
  return rows.map((r) => r.alias);
}

async function roomRow(deps: DirectoryDeps, roomId: string) {
  const row = await deps.storage.db
    .selectFrom('rooms')
    .select(['room_id', 'is_public'])
    .where('room_id', '=', roomId)
    .executeTakeFirst();
  if (!row) throw new MatrixError('M_NOT_FOUND', 'Room not found');
  return row;
}

/** GET /directory/list/room/{roomId} */
export async function getVisibility(deps: DirectoryDeps, roomId: string): Promise<'public' | 'private'> {
  return Number((await roomRow(deps, roomId)).is_public) === 1 ? 'public' : 'private';
}

/** PUT /directory/list/room/{roomId}: room moderators (power to send m.room.canonical_alias) and admins. */
export async function setVisibility(
  deps: DirectoryDeps,
  actor: Actor,
  roomId: string,
  visibility: 'public' | 'private',
): Promise<void> {
  await roomRow(deps, roomId);
  const head = await deps.writer.head(roomId);
  if (!head) throw new MatrixError('M_NOT_FOUND', 'Room not found');
  if (!canChangeRoomList(head, actor)) {
    throw new MatrixError('M_FORBIDDEN', 'This user is not permitted to edit the published room list');
  }
  await setRoomPublic(deps.storage, roomId, visibility === 'public');
}

export async function setRoomPublic(storage: Storage, roomId: string, isPublic: boolean): Promise<void> {
  await storage.db
    .updateTable('rooms')
    .set({ is_public: isPublic ? 1 : 0 })
    .where('room_id', '=', roomId)
    .execute();
}
