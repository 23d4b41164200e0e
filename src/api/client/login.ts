/** Login, token refresh, logout and whoami (client-server API "Login", "Refreshing access tokens", "Logout"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { hashToken, verifyPassword } from '../../accounts/secrets.js';
import { createSession } from '../../accounts/sessions.js';
import { removeDevices } from '../../accounts/devices.js';
import { deleteRefreshToken, findRefreshToken, listDevices } from '../../storage/devices.js';
import { getUser } from '../../storage/users.js';
import { requester, userLocked } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { claimedUserId } from '../uia.js';
import { parseBody } from '../validate.js';
import { baseUrl } from './versions.js';
import { APPSERVICE_LOGIN_TYPE, loginAppServiceUser } from '../appservice-accounts.js';

const LoginBody = z.looseObject({
  type: z.string(),
  identifier: z.looseObject({ type: z.string() }).optional(),
  user: z.string().optional(),
  password: z.string().optional(),
  device_id: z.string().min(1).max(255).optional(),
  initial_device_display_name: z.string().max(512).optional(),
  refresh_token: z.boolean().optional(),
});

const RefreshBody = z.object({ refresh_token: z.string() });

export function loginRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { config, storage, auth, rateLimiter } = deps;

  /** GET /_matrix/client/v3/login */
  app.get('/_matrix/client/v3/login', async () => ({
    flows: [{ type: 'm.login.password' }, { type: APPSERVICE_LOGIN_TYPE }],
  }));

  /** POST /_matrix/client/v3/login */
  app.post('/_matrix/client/v3/login', async (req) => {
    const body = parseBody(LoginBody, req.body);
    // An application service (authenticated by its as_token) is not limited like anonymous logins.
    if (body.type === APPSERVICE_LOGIN_TYPE)
      return {
        ...(await loginAppServiceUser(deps, req, body)),
        home_server: config.server_name,
        well_known: { 'm.homeserver': { base_url: baseUrl(deps) } },
      };
    rateLimiter.check(`login:ip:${req.ip}`, config.rate_limiting.login);
    if (body.type !== 'm.login.password') {
      throw new MatrixError('M_UNKNOWN', `Unknown login type ${body.type}`, {}, 400);
    }
    if (body.identifier && body.identifier.type !== 'm.id.user') {
      throw new MatrixError('M_UNKNOWN', `Unsupported identifier type ${body.identifier.type}`, {}, 400);
    }
    if (typeof body.password !== 'string')
      throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: password');
    const userId = claimedUserId(body as Record<string, unknown>, config.server_name);
    if (!userId) throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: identifier.user');
    const user = await getUser(storage.db, userId);
    // Deactivation clears the password hash, so this must be checked before the password (as Synapse does).
    if (user?.deactivated) throw new MatrixError('M_USER_DEACTIVATED', 'This account has been deactivated');
    const ok = user !== undefined && (await verifyPassword(user.password_hash, body.password));
    if (!ok || !user) {
      rateLimiter.check(`login:user:${userId}`, config.rate_limiting.login);
      throw new MatrixError('M_FORBIDDEN', 'Invalid username or password');
    }
    if (user.locked) throw userLocked();
    const session = await createSession(storage.db, {
      userId: user.user_id,
      deviceId: body.device_id,
      displayName: body.initial_device_display_name,
      refreshToken: body.refresh_token === true,
      accessTokenLifetimeMs: config.access_token_lifetime_ms,
      refreshTokenLifetimeMs: config.refresh_token_lifetime_ms,
    });
    return {
      ...session,
      home_server: config.server_name,
      well_known: { 'm.homeserver': { base_url: baseUrl(deps) } },
    };
  });

  /** POST /_matrix/client/v3/refresh */
  app.post('/_matrix/client/v3/refresh', async (req) => {
    const body = parseBody(RefreshBody, req.body);
    const found = await findRefreshToken(storage.db, hashToken(body.refresh_token));
    if (!found || (found.expires_ts !== null && found.expires_ts <= Date.now())) {
      throw new MatrixError('M_UNKNOWN_TOKEN', 'Unknown refresh token', { soft_logout: false });
    }
    // The old refresh token and the access tokens it issued are replaced by a fresh pair.
    await deleteRefreshToken(storage.db, found.id);
    const session = await createSession(storage.db, {
      userId: found.user_id,
      deviceId: found.device_id,
      refreshToken: true,
      accessTokenLifetimeMs: config.access_token_lifetime_ms,
      refreshTokenLifetimeMs: config.refresh_token_lifetime_ms,
    });
    return {
      access_token: session.access_token,
      refresh_token: session.refresh_token,
      expires_in_ms: session.expires_in_ms,
    };
  });

  /** POST /_matrix/client/v3/logout */
  app.post('/_matrix/client/v3/logout', { preHandler: auth.requireUserEvenLocked }, async (req) => {
    const r = requester(req);
    await removeDevices(deps, r.userId, [r.deviceId]);
    return {};
  });

  /** POST /_matrix/client/v3/logout/all */
  app.post('/_matrix/client/v3/logout/all', { preHandler: auth.requireUserEvenLocked }, async (req) => {
    const r = requester(req);
    const devices = await listDevices(storage.db, r.userId);
    await removeDevices(
      deps,
      r.userId,
      devices.map((d) => d.device_id),
    );
    return {};
  });

  /** GET /_matrix/client/v3/account/whoami */
  app.get('/_matrix/client/v3/account/whoami', { preHandler: auth.requireUser }, async (req) => {
    const r = requester(req);
    // An application service acting without device_id has no device.
    return { user_id: r.userId, device_id: r.deviceId || undefined, is_guest: r.isGuest };
  });
}
