/** Room aliases and the published room directory (client-server API "Room aliases", "Room discovery"). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { remotePublicRooms, type RemotePublicRoomsRequest } from '../../federation/remote-directory.js';
import {
  createAlias,
  deleteAlias,
  getVisibility,
  localAliases,
  resolveAlias,
  setVisibility,
} from '../../roomsvc/directory.js';
import { listPublicRooms } from '../../roomsvc/public-rooms.js';
import { appServiceNetworkRooms } from '../../appservice/directory.js';
import { bearerToken, requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { isValidServerName } from '../../rooms/identifiers.js';
import { MatrixError } from '../errors.js';
import { parseBody, parseQuery } from '../validate.js';

type AliasParams = { Params: { roomAlias: string } };
type RoomParams = { Params: { roomId: string } };

const AliasBody = z.looseObject({ room_id: z.string() });
const VisibilityBody = z.looseObject({ visibility: z.enum(['public', 'private']).default('public') });
const PublicRoomsQuery = z.looseObject({
  limit: z.coerce.number().int().min(0).optional(),
  since: z.string().optional(),
  server: z.string().optional(),
  include_all_networks: z.enum(['true', 'false']).optional(),
  third_party_instance_id: z.string().optional(),
});
/** The POST /publicRooms body, the same for clients and other servers. */
export const PublicRoomsBody = z.looseObject({
  limit: z.number().int().min(0).optional(),
  since: z.string().optional(),
  filter: z
    .looseObject({
      generic_search_term: z.string().optional(),
      room_types: z.array(z.string().nullable()).optional(),
    })
    .optional(),
  include_all_networks: z.boolean().optional(),
  third_party_instance_id: z.string().optional(),
});

export function directoryRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { storage, writer, auth, config } = deps;
  const d = {
    storage,
    writer,
    serverName: config.server_name,
    remoteAlias:
      deps.remoteQueries && ((server: string, alias: string) => deps.remoteQueries!.directory(server, alias)),
    appServices: deps.appServices,
    queryAlias: deps.appServiceQueries?.queryAlias,
  };
  const guard = { preHandler: auth.requireUser };
  const actor = (req: FastifyRequest) => {
    const r = requester(req);
    return { userId: r.userId, isAdmin: r.isAdmin, appServiceId: r.appServiceId };
  };
  /** Another server's directory over federation; undefined for this server's (or when `server` names it). */
  const remoteDirectory = (server: string | undefined, req: RemotePublicRoomsRequest) => {
    if (server === undefined || server === config.server_name) return undefined;
    if (!isValidServerName(server))
      throw new MatrixError('M_INVALID_PARAM', `Invalid server name: ${server}`);
    const client = deps.federation?.client;
    if (!client) throw new MatrixError('M_INVALID_PARAM', `Cannot list the room directory of ${server}`);
    return remotePublicRooms(client, server, req);
  };
  /** GET /publicRooms needs no token; a token that is present must be valid. */
  const optionalUser = async (req: FastifyRequest) => {
    if (bearerToken(req) !== undefined) req.requester = await auth.authenticate(req);
  };

  /** PUT /_matrix/client/v3/directory/room/{roomAlias} */
  app.put<AliasParams>('/_matrix/client/v3/directory/room/:roomAlias', guard, async (req) => {
    const body = parseBody(AliasBody, req.body);
    await createAlias(d, actor(req), req.params.roomAlias, body.room_id);
    return {};
  });

  /** GET /_matrix/client/v3/directory/room/{roomAlias} */
  app.get<AliasParams>('/_matrix/client/v3/directory/room/:roomAlias', async (req) =>
    resolveAlias(d, req.params.roomAlias),
  );

  /** DELETE /_matrix/client/v3/directory/room/{roomAlias} */
  app.delete<AliasParams>('/_matrix/client/v3/directory/room/:roomAlias', guard, async (req) => {
    await deleteAlias(d, actor(req), req.params.roomAlias, (msg, err) => req.log.warn({ err }, msg));
    return {};
  });

  /** GET /_matrix/client/v3/rooms/{roomId}/aliases */
  app.get<RoomParams>('/_matrix/client/v3/rooms/:roomId/aliases', guard, async (req) => ({
    aliases: await localAliases(d, actor(req), req.params.roomId),
  }));

  /** GET /_matrix/client/v3/directory/list/room/{roomId} */
  app.get<RoomParams>('/_matrix/client/v3/directory/list/room/:roomId', async (req) => ({
    visibility: await getVisibility(d, req.params.roomId),
  }));

  /** PUT /_matrix/client/v3/directory/list/room/{roomId} */
  app.put<RoomParams>('/_matrix/client/v3/directory/list/room/:roomId', guard, async (req) => {
    const body = parseBody(VisibilityBody, req.body);
    await setVisibility(d, actor(req), req.params.roomId, body.visibility);
    return {};
  });

  /** GET /_matrix/client/v3/publicRooms */
  app.get('/_matrix/client/v3/publicRooms', { preHandler: optionalUser }, async (req) => {
    const q = parseQuery(PublicRoomsQuery, req.query);
    const remote = remoteDirectory(q.server, {
      limit: q.limit,
      since: q.since,
      include_all_networks:
        q.include_all_networks === undefined ? undefined : q.include_all_networks === 'true',
      third_party_instance_id: q.third_party_instance_id,
    });
    if (remote) return remote;
    const roomIds = await appServiceNetworkRooms(
      storage.db,
      q.include_all_networks === 'true',
      q.third_party_instance_id,
    );
    return listPublicRooms(d, { limit: q.limit, since: q.since, roomIds });
  });

  /** POST /_matrix/client/v3/publicRooms */
  app.post('/_matrix/client/v3/publicRooms', guard, async (req) => {
    const { server } = parseQuery(z.looseObject({ server: z.string().optional() }), req.query);
    const body = parseBody(PublicRoomsBody, req.body);
    // The filter is sent as given (an empty one too: POST, as Synapse asks).
    const remote = remoteDirectory(server, {
      limit: body.limit,
      since: body.since,
      filter: { generic_search_term: body.filter?.generic_search_term, room_types: body.filter?.room_types },
      include_all_networks: body.include_all_networks,
      third_party_instance_id: body.third_party_instance_id,
    });
    if (remote) return remote;
    return listPublicRooms(d, {
      limit: body.limit,
      since: body.since,
      searchTerm: body.filter?.generic_search_term,
      roomTypes: body.filter?.room_types,
      roomIds: await appServiceNetworkRooms(
        storage.db,
        body.include_all_networks === true,
        body.third_party_instance_id,
      ),
    });
  });
}
