/** Room membership endpoints (client-server API "Room membership"). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isValidUserId } from '../../rooms/identifiers.js';
import { resolveAlias } from '../../roomsvc/directory.js';
import { changeMembership, join, kick, knock, resolveRoom, unban } from '../../roomsvc/membership.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody } from '../validate.js';

const ReasonBody = z.looseObject({ reason: z.string().optional() });
const TargetBody = z.looseObject({ user_id: z.string(), reason: z.string().optional() });

type RoomParams = { Params: { roomId: string } };

/** `server_name` (deprecated) and `via` query parameters, each once or repeated. */
function viaServers(query: unknown): string[] {
  const q = (query ?? {}) as Record<string, unknown>;
  const list = (v: unknown): string[] =>
    typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x) => typeof x === 'string') : [];
  return [...list(q.via), ...list(q.server_name)];
}

function target(userId: string): string {
  if (!isValidUserId(userId)) throw new MatrixError('M_INVALID_PARAM', `Invalid user id: ${userId}`);
  return userId;
}

export function membershipRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { storage, writer, auth, config } = deps;
  const m = {
    storage,
    writer,
    serverName: config.server_name,
    federation: deps.federation && { ...deps.federation, signingKey: deps.signingKey },
  };
  const directory = {
    storage,
    writer,
    serverName: config.server_name,
    remoteAlias:
      deps.remoteQueries && ((server: string, alias: string) => deps.remoteQueries!.directory(server, alias)),
    queryAlias: deps.appServiceQueries?.queryAlias,
  };
  /** A room id, or an alias resolved (another server's over federation) with the servers to join through. */
  const joinTarget = async (roomIdOrAlias: string): Promise<{ roomId: string; servers: string[] }> => {
    if (!roomIdOrAlias.startsWith('#'))
      return { roomId: await resolveRoom(storage, roomIdOrAlias), servers: [] };
    const found = await resolveAlias(directory, roomIdOrAlias);
    return { roomId: found.room_id, servers: found.servers };
  };
  const guard = { preHandler: auth.requireUser };
  const reason = (b: { reason?: string | undefined }) => (b.reason !== undefined ? { reason: b.reason } : {});
  const limit = (req: FastifyRequest, action: 'joins' | 'invites') =>
    deps.rateLimiter.checkRequester(action, config.rate_limiting[action], requester(req), req.ip);

  /** POST /_matrix/client/v3/rooms/{roomId}/join */
  app.post<RoomParams>('/_matrix/client/v3/rooms/:roomId/join', guard, async (req) => {
    const body = parseBody(ReasonBody, req.body);
    limit(req, 'joins');
    const r = requester(req);
    return { room_id: await join(m, req.params.roomId, r.userId, body.reason, r.isGuest) };
  });

  /** POST /_matrix/client/v3/join/{roomIdOrAlias} */
  app.post<{ Params: { roomIdOrAlias: string } }>(
    '/_matrix/client/v3/join/:roomIdOrAlias',
    guard,
    async (req) => {
      const body = parseBody(ReasonBody, req.body);
      limit(req, 'joins');
      const { roomId, servers } = await joinTarget(req.params.roomIdOrAlias);
      const r = requester(req);
      const via = [...viaServers(req.query), ...servers];
      return { room_id: await join(m, roomId, r.userId, body.reason, r.isGuest, via) };
    },
  );

  /** POST /_matrix/client/v3/knock/{roomIdOrAlias} */
  app.post<{ Params: { roomIdOrAlias: string } }>(
    '/_matrix/client/v3/knock/:roomIdOrAlias',
    guard,
    async (req) => {
      const body = parseBody(ReasonBody, req.body);
      const roomId = await resolveRoom(storage, req.params.roomIdOrAlias);
      const me = requester(req).userId;
      await knock(m, roomId, me, reason(body), viaServers(req.query));
      return { room_id: roomId };
    },
  );

  /** POST /_matrix/client/v3/rooms/{roomId}/invite */
  app.post<RoomParams>('/_matrix/client/v3/rooms/:roomId/invite', guard, async (req) => {
    const body = parseBody(TargetBody, req.body);
    limit(req, 'invites');
    await deps.appServiceQueries?.queryUnknownUser(storage.db, target(body.user_id), config.server_name);
    await changeMembership(
      m,
      req.params.roomId,
      requester(req).userId,
      target(body.user_id),
      'invite',
      reason(body),
    );
    return {};
  });

  /** POST /_matrix/client/v3/rooms/{roomId}/leave */
  app.post<RoomParams>('/_matrix/client/v3/rooms/:roomId/leave', guard, async (req) => {
    const body = parseBody(ReasonBody, req.body);
    const me = requester(req).userId;
    await changeMembership(m, req.params.roomId, me, me, 'leave', reason(body));
    return {};
  });

  /** POST /_matrix/client/v3/rooms/{roomId}/kick */
  app.post<RoomParams>('/_matrix/client/v3/rooms/:roomId/kick', guard, async (req) => {
    const body = parseBody(TargetBody, req.body);
    await kick(m, req.params.roomId, requester(req).userId, target(body.user_id), reason(body));
    return {};
  });

  /** POST /_matrix/client/v3/rooms/{roomId}/ban */
  app.post<RoomParams>('/_matrix/client/v3/rooms/:roomId/ban', guard, async (req) => {
    const body = parseBody(TargetBody, req.body);
    await changeMembership(
      m,
      req.params.roomId,
      requester(req).userId,
      target(body.user_id),
      'ban',
      reason(body),
    );
    return {};
  });

  /** POST /_matrix/client/v3/rooms/{roomId}/unban */
  app.post<RoomParams>('/_matrix/client/v3/rooms/:roomId/unban', guard, async (req) => {
    const body = parseBody(TargetBody, req.body);
    await unban(m, req.params.roomId, requester(req).userId, target(body.user_id), reason(body));
    return {};
  });

  /** POST /_matrix/client/v3/rooms/{roomId}/forget */
  app.post<RoomParams>('/_matrix/client/v3/rooms/:roomId/forget', guard, async (req) => {
    const me = requester(req).userId;
    const row = await storage.db
      .selectFrom('room_members as m')
      .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
      .select(['m.membership', 'm.room_nid'])
      .where('r.room_id', '=', req.params.roomId)
      .where('m.user_id', '=', me)
      .executeTakeFirst();
    if (!row) throw new MatrixError('M_NOT_FOUND', 'You have never been in this room');
    if (row.membership === 'join' || row.membership === 'invite' || row.membership === 'knock') {
      throw new MatrixError('M_UNKNOWN', 'Leave the room before forgetting it', {}, 400);
    }
    await storage.db
      .updateTable('room_members')
      .set({ forgotten: 1 })
      .where('room_nid', '=', row.room_nid)
      .where('user_id', '=', me)
      .execute();
    return {};
  });

  /** GET /_matrix/client/v3/joined_rooms */
  app.get('/_matrix/client/v3/joined_rooms', guard, async (req) => {
    const rows = await storage.db
      .selectFrom('room_members as m')
      .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
      .select('r.room_id')
      .where('m.user_id', '=', requester(req).userId)
      .where('m.membership', '=', 'join')
      .execute();
    return { joined_rooms: rows.map((r) => r.room_id) };
  });
}
