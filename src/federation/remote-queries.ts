/**
 * The client side of the federation query API: another server's user profiles (`/query/profile`) and room aliases
 * (`/query/directory`), for the client profile and directory endpoints. A failure rejects with FederationError
 * (its `status` is the remote's answer, undefined when the server could not be reached).
 */
import type { JsonObject } from '../rooms/event.js';
import { isJsonObject } from '../util/validate.js';
import { FederationError, type FederationClient } from './client.js';

export interface RemoteQueries {
  profile(server: string, userId: string, field?: string): Promise<JsonObject>;
  directory(server: string, alias: string): Promise<{ room_id: string; servers: string[] }>;
}

export function remoteQueries(client: Pick<FederationClient, 'get'>): RemoteQueries {
  return {
    async profile(server, userId, field) {
      const res = await client.get(server, '/_matrix/federation/v1/query/profile', {
        query: field === undefined ? { user_id: userId } : { user_id: userId, field },
      });
      if (!isJsonObject(res.body))
        throw new FederationError(`${server} answered with a profile that is not an object`);
      // Only the two profile fields, as strings (what a client reads).
      const out: JsonObject = {};
      for (const f of ['displayname', 'avatar_url'])
        if (typeof res.body[f] === 'string') out[f] = res.body[f];
      return out;
    },
    async directory(server, alias) {
      const res = await client.get(server, '/_matrix/federation/v1/query/directory', {
        query: { room_alias: alias },
      });
      const body = res.body;
      if (!isJsonObject(body) || typeof body.room_id !== 'string')
        throw new FederationError(`${server} answered the alias query without a room_id`);
      const servers = Array.isArray(body.servers)
        ? body.servers.filter((s): s is string => typeof s === 'string')
        : [];
      return { room_id: body.room_id, servers };
    },
  };
}
