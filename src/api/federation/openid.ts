/**
 * GET /_matrix/federation/v1/openid/userinfo (server-server API "OpenID"): exchanges a token from
 * /user/{userId}/openid/request_token for the user's id. Not authenticated with the federation signature: the
 * token is the credential. Served on listeners with the `federation` resource, as Synapse does; its answers: 401
 * M_MISSING_TOKEN without a token, 401 M_UNKNOWN_TOKEN for an unknown or expired one.
 */
import type { FastifyInstance } from 'fastify';
import { hashToken } from '../../accounts/secrets.js';
import type { Storage } from '../../storage/db.js';
import { findOpenidTokenUser } from '../../storage/openid.js';
import { MatrixError } from '../errors.js';

export function openidFederationRoutes(app: FastifyInstance, deps: { storage: Storage }): void {
  app.get('/_matrix/federation/v1/openid/userinfo', async (req) => {
    const query = req.query as Record<string, unknown> | undefined;
    const param: unknown = query?.access_token;
    const token: unknown = Array.isArray(param) ? (param as unknown[])[0] : param;
    if (typeof token !== 'string' || token === '')
      throw new MatrixError('M_MISSING_TOKEN', 'Access Token required');
    const userId = await findOpenidTokenUser(deps.storage.db, hashToken(token), Date.now());
    if (userId === undefined) throw new MatrixError('M_UNKNOWN_TOKEN', 'Access Token unknown or expired');
    return { sub: userId };
  });
}
