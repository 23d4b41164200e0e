/** Spaces (client-server API "Spaces"): the space hierarchy. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { RemoteHierarchy } from '../../federation/remote-hierarchy.js';
import { SpaceHierarchy } from '../../roomsvc/hierarchy.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseQuery } from '../validate.js';

const HierarchyQuery = z.looseObject({
  suggested_only: z.enum(['true', 'false']).default('false'),
  limit: z.coerce.number().int().min(1).optional(),
  max_depth: z.coerce.number().int().min(0).optional(),
  from: z.string().optional(),
});

export function hierarchyRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'writer' | 'auth' | 'federation' | 'config'>,
): void {
  const client = deps.federation?.client;
  const serverName = deps.config.server_name;
  const hierarchy = new SpaceHierarchy(
    deps.writer,
    client && { serverName, hierarchy: new RemoteHierarchy(client, serverName) },
  );

  /** GET /_matrix/client/v1/rooms/{roomId}/hierarchy */
  app.get<{ Params: { roomId: string } }>(
    '/_matrix/client/v1/rooms/:roomId/hierarchy',
    { preHandler: deps.auth.requireUser },
    async (req) => {
      const q = parseQuery(HierarchyQuery, req.query);
      return hierarchy.get({
        userId: requester(req).userId,
        roomId: req.params.roomId,
        suggestedOnly: q.suggested_only === 'true',
        limit: q.limit,
        maxDepth: q.max_depth,
        from: q.from,
      });
    },
  );
}
