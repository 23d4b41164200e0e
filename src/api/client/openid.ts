/**
 * POST /_matrix/client/v3/user/{userId}/openid/request_token (client-server API "OpenID"): a token a third party
 * (integration manager, widget) exchanges at GET /_matrix/federation/v1/openid/userinfo for the user's id. As in
 * Synapse: only for oneself, the body must be a JSON object but is ignored, the token lives an hour.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { hashToken } from '../../accounts/secrets.js';
import { deleteExpiredOpenidTokens, insertOpenidToken } from '../../storage/openid.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody } from '../validate.js';

export const OPENID_TOKEN_LIFETIME_MS = 3600 * 1000;

export function openidRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'auth' | 'config' | 'storage'>): void {
  app.post<{ Params: { userId: string } }>(
    '/_matrix/client/v3/user/:userId/openid/request_token',
    { preHandler: deps.auth.requireUser },
    async (req) => {
      const r = requester(req);
      if (req.params.userId !== r.userId)
        throw new MatrixError('M_FORBIDDEN', 'Cannot request tokens for other users');
      parseBody(z.looseObject({}), req.body);
      const token = `hot_${randomBytes(32).toString('base64url')}`;
      const now = Date.now();
      await deleteExpiredOpenidTokens(deps.storage.db, now);
      await insertOpenidToken(deps.storage.db, {
        tokenHash: hashToken(token),
        userId: r.userId,
        expiresTs: now + OPENID_TOKEN_LIFETIME_MS,
      });
      return {
        access_token: token,
        token_type: 'Bearer',
        matrix_server_name: deps.config.server_name,
        expires_in: OPENID_TOKEN_LIFETIME_MS / 1000,
      };
    },
  );
}
