/**
 * GET /_matrix/federation/v1/query/profile: a local user's public profile for another server.
 * GET /_matrix/federation/v1/query/directory: the room a local alias maps to, with servers joined to it.
 */
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import { parseRoomAlias, parseUserId } from '../../rooms/identifiers.js';
import type { Storage } from '../../storage/db.js';
import { joinedServersOfRoom } from '../../storage/federation-queue.js';
import { profileFields } from '../../storage/profile-fields.js';
import { getUser } from '../../storage/users.js';
import { invalidParam, notFound } from '../errors.js';
import { parseQuery } from '../validate.js';

export interface QueryRoutesDeps {
  serverName: string;
  storage: Storage;
  authenticate: preHandlerAsyncHookHandler;
}

const ProfileQuery = z.looseObject({ user_id: z.string(), field: z.string().optional() });
const DirectoryQuery = z.looseObject({ room_alias: z.string() });

export function queryRoutes(app: FastifyInstance, deps: QueryRoutesDeps): void {
  app.get('/_matrix/federation/v1/query/profile', { preHandler: deps.authenticate }, async (req) => {
    const { user_id: userId, field } = parseQuery(ProfileQuery, req.query);
    const parsed = parseUserId(userId, { historical: true });
    if (!parsed) throw invalidParam(`Invalid user ID: ${userId}`);
    if (parsed.serverName !== deps.serverName) throw invalidParam('User is not hosted on this homeserver');
    const user = await getUser(deps.storage.db, userId);
    if (!user || user.deactivated) throw notFound('Profile was not found');
    // Custom profile fields (v1.16) too; the two columns win.
    const profile: Record<string, unknown> = await profileFields(deps.storage.db, userId);
    if (user.displayname !== null) profile['displayname'] = user.displayname;
    if (user.avatar_url !== null) profile['avatar_url'] = user.avatar_url;
    if (field === undefined) return profile;
    return field in profile ? { [field]: profile[field] } : {};
  });

  app.get('/_matrix/federation/v1/query/directory', { preHandler: deps.authenticate }, async (req) => {
    const { room_alias: alias } = parseQuery(DirectoryQuery, req.query);
    const parsed = parseRoomAlias(alias);
    if (!parsed) throw invalidParam(`Invalid room alias: ${alias}`);
    if (parsed.serverName !== deps.serverName)
      throw invalidParam('Room alias is not hosted on this homeserver');
    const row = await deps.storage.db
      .selectFrom('room_aliases')
      .select('room_id')
      .where('alias', '=', alias)
      .executeTakeFirst();
    if (!row) throw notFound(`Room alias ${alias} not found`);
    // This server first, as Synapse lists it; then the others joined to the room.
    const others = [...(await joinedServersOfRoom(deps.storage.db, row.room_id))]
      .filter((s) => s !== deps.serverName)
      .sort();
    return { room_id: row.room_id, servers: [deps.serverName, ...others] };
  });
}
