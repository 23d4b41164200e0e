/** Account registration (client-server API "Account registration"), with user-interactive auth. */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  createAccount,
  guestLocalpart,
  isUserIdAvailable,
  validateLocalpart,
} from '../../accounts/register.js';
import { createSession } from '../../accounts/sessions.js';
import { checkRegistrationToken, useRegistrationToken } from '../../storage/registration-tokens.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import type { Stage } from '../uia.js';
import { isJsonObject, parseBody, parseQuery } from '../validate.js';

const RegisterBody = z.looseObject({
  auth: z.looseObject({}).optional(),
  username: z.string().optional(),
  password: z.string().max(512).optional(),
  device_id: z.string().min(1).max(255).optional(),
  initial_device_display_name: z.string().max(512).optional(),
  inhibit_login: z.boolean().optional(),
  refresh_token: z.boolean().optional(),
});

const RegisterQuery = z.looseObject({ kind: z.enum(['user', 'guest']).default('user') });
const AvailableQuery = z.looseObject({ username: z.string() });

export function registerRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { config, storage, rateLimiter, uia } = deps;
  const flows: Stage[][] = config.registration_requires_token
    ? [['m.login.registration_token']]
    : [['m.login.dummy']];

  /** POST /_matrix/client/v3/register */
  app.post('/_matrix/client/v3/register', async (req) => {
    const { kind } = parseQuery(RegisterQuery, req.query);
    const body = parseBody(RegisterBody, req.body);
    rateLimiter.check(`register:ip:${req.ip}`, config.rate_limiting.register);

    if (kind === 'guest') {
      if (!config.allow_guest_access)
        throw new MatrixError('M_GUEST_ACCESS_FORBIDDEN', 'Guest access is disabled');
      const userId = await createAccount(storage.db, {
        localpart: guestLocalpart(),
        serverName: config.server_name,
        password: null,
        guest: true,
      });
      const session = await createSession(storage.db, {
        userId,
        displayName: body.initial_device_display_name,
        refreshToken: body.refresh_token === true,
        accessTokenLifetimeMs: config.access_token_lifetime_ms,
        refreshTokenLifetimeMs: config.refresh_token_lifetime_ms,
      });
      return { ...session, home_server: config.server_name };
    }

    if (!config.enable_registration) throw new MatrixError('M_FORBIDDEN', 'Registration has been disabled');
    // The spec asks for the username checks before user-interactive auth.
    const localpart = body.username !== undefined ? body.username.toLowerCase() : undefined;
    if (localpart !== undefined) {
      validateLocalpart(localpart, config.server_name);
      if (!(await isUserIdAvailable(storage.db, `@${localpart}:${config.server_name}`))) {
        throw new MatrixError('M_USER_IN_USE', 'User ID already taken');
      }
    }
    await uia.require({ req, auth: body.auth, flows });
    if (body.password === undefined || body.password === '') {
      throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: password');
    }
    const userId = await createAccount(storage.db, {
      localpart: localpart ?? `u${randomBytes(6).toString('hex')}`,
      serverName: config.server_name,
      password: body.password,
    });
    const token = isJsonObject(body.auth) ? body.auth.token : undefined;
    if (config.registration_requires_token && typeof token === 'string')
      await useRegistrationToken(storage.db, token);
    if (body.inhibit_login) return { user_id: userId, home_server: config.server_name };
    const session = await createSession(storage.db, {
      userId,
      deviceId: body.device_id,
      displayName: body.initial_device_display_name,
      refreshToken: body.refresh_token === true,
      accessTokenLifetimeMs: config.access_token_lifetime_ms,
      refreshTokenLifetimeMs: config.refresh_token_lifetime_ms,
    });
    return { ...session, home_server: config.server_name };
  });

  /** GET /_matrix/client/v3/register/available */
  app.get('/_matrix/client/v3/register/available', async (req) => {
    const { username } = parseQuery(AvailableQuery, req.query);
    rateLimiter.check(`register:ip:${req.ip}`, config.rate_limiting.register);
    const localpart = username.toLowerCase();
    validateLocalpart(localpart, config.server_name);
    if (!(await isUserIdAvailable(storage.db, `@${localpart}:${config.server_name}`))) {
      throw new MatrixError('M_USER_IN_USE', 'User ID already taken');
    }
    return { available: true };
  });

  /** GET /_matrix/client/v1/register/m.login.registration_token/validity */
  app.get('/_matrix/client/v1/register/m.login.registration_token/validity', async (req) => {
    const { token } = parseQuery(z.looseObject({ token: z.string() }), req.query);
    rateLimiter.check(`register:ip:${req.ip}`, config.rate_limiting.register);
    if (!config.enable_registration)
      throw new MatrixError('M_FORBIDDEN', 'Registration is not enabled on this homeserver');
    return { valid: await checkRegistrationToken(storage.db, token, Date.now()) };
  });
}
