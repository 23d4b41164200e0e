/** User directory (client-server API "User directory"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { searchUserDirectory } from '../../roomsvc/user-directory.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseBody } from '../validate.js';

const SearchBody = z.looseObject({
  search_term: z.string(),
  limit: z.number().int().default(10),
});

export function userDirectoryRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'storage' | 'auth'>): void {
  /** POST /_matrix/client/v3/user_directory/search */
  app.post('/_matrix/client/v3/user_directory/search', { preHandler: deps.auth.requireUser }, async (req) => {
    const body = parseBody(SearchBody, req.body);
    return searchUserDirectory(deps.storage, requester(req).userId, body.search_term, body.limit);
  });
}
