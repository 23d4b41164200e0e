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
import { hashPassword, hashToken } from '../../accounts/secrets.js';
import { createSession } from '../../accounts/sessions.js';
import { findAccessToken } from '../../storage/devices.js';
import { checkRegistrationToken, useRegistrationToken } from '../../storage/registration-tokens.js';
import { upgradeGuestUser } from '../../storage/users.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import type { Stage } from '../uia.js';
import { parseBody, parseQuery } from '../validate.js';
import {
  APPSERVICE_LOGIN_TYPE,
  checkUserNotExclusive,
  registerAppServiceUser,
} from '../appservice-accounts.js';

const RegisterBody = z.looseObject({
  auth: z.looseObject({}).optional(),
  username: z.string().optional(),
  password: z.string().max(512).optional(),
  device_id: z.string().min(1).max(255).optional(),
  initial_device_display_name: z.string().max(512).optional(),
  inhibit_login: z.boolean().optional(),
  refresh_token: z.boolean().optional(),
  /** Guest access module: a guest upgrading its account names itself with its access token. */
  guest_access_token: z.string().optional(),
});

const RegisterQuery = z.looseObject({ kind: z.enum(['user', 'guest']).default('user') });
const AvailableQuery = z.looseObject({ username: z.string() });

/** Keys of the data registration attaches to its UIA session (Synapse's UIAuthSessionDataConstants). */
const REGISTERED_USER_ID = 'registered_user_id';
const PASSWORD_HASH = 'password_hash';

export function registerRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { config, storage, rateLimiter, uia } = deps;
  const flows: Stage[][] = config.registration_requires_token
    ? [['m.login.registration_token']]
    : [['m.login.dummy']];

  /**
   * The checks of a requested username, before user-interactive auth as the spec asks. A session that already
   * registered a user accepts only that user's name again (the replay of a completed registration); a guest
   * upgrading its account must prove it holds that guest account.
   */
  async function checkUsername(
    localpart: string,
    guestToken: string | undefined,
    registered: string | undefined,
  ): Promise<void> {
    const userId = `@${localpart}:${config.server_name}`;
    if (registered !== undefined) {
      if (registered === userId) return;
      throw new MatrixError(
        'M_UNKNOWN',
        'A different user ID has already been registered for this session',
        {},
        400,
      );
    }
    validateLocalpart(localpart, config.server_name, guestToken !== undefined);
    checkUserNotExclusive(deps.appServices, userId);
    if (guestToken !== undefined) {
      const owner = await findAccessToken(storage.db, hashToken(guestToken));
      if (!owner || owner.deactivated || !owner.isGuest || owner.userId !== userId) {
        throw new MatrixError(
          'M_FORBIDDEN',
          'Cannot register taken user ID without valid guest credentials for that user',
        );
      }
      return;
    }
    if (!(await isUserIdAvailable(storage.db, userId))) {
      throw new MatrixError('M_USER_IN_USE', 'User ID already taken');
    }
  }

  /** POST /_matrix/client/v3/register */
  app.post('/_matrix/client/v3/register', async (req) => {
    const { kind } = parseQuery(RegisterQuery, req.query);
    const body = parseBody(RegisterBody, req.body);
    if (body.type === APPSERVICE_LOGIN_TYPE) return registerAppServiceUser(deps, req, body);
    rateLimiter.check(`register:ip:${req.ip}`, config.rate_limiting.register);

    if (kind === 'guest') {
      // Synapse answers 403 with M_UNKNOWN here; the spec's 403 for registration is M_FORBIDDEN.
      if (!config.allow_guest_access) throw new MatrixError('M_FORBIDDEN', 'Guest access is disabled');
      const userId = await createAccount(storage.db, {
        localpart: guestLocalpart(),
        serverName: config.server_name,
        password: null,
        guest: true,
      });
      // As in Synapse, a guest cannot choose its device id: nothing proves it owns that device.
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
    if (body.guest_access_token !== undefined && body.username === undefined) {
      throw new MatrixError('M_MISSING_PARAM', 'Upgrading a guest account needs its username');
    }
    // The spec asks for the username checks before user-interactive auth.
    const earlier = await uia.sessionData(body.auth);
    const localpart = body.username?.toLowerCase();
    if (localpart !== undefined)
      await checkUsername(localpart, body.guest_access_token, earlier[REGISTERED_USER_ID]);

    // The session keeps the other parameters; the password only as a hash, so that a later request of the session
    // may carry nothing but `auth` (SyTest "registration remembers parameters").
    const result = await uia.require({
      req,
      auth: body.auth,
      flows,
      beforeChallenge: async (s) => {
        if (body.password && !s.data[PASSWORD_HASH])
          await uia.setSessionData(s.sessionId, PASSWORD_HASH, await hashPassword(body.password));
      },
    });
    const params = parseBody(RegisterBody, result.params);

    // A completed session replayed answers with the account it registered (SyTest "registration is idempotent").
    let userId = result.data[REGISTERED_USER_ID];
    if (userId === undefined) {
      const passwordHash = body.password ? await hashPassword(body.password) : result.data[PASSWORD_HASH];
      if (!passwordHash) throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: password');
      const name = params.username?.toLowerCase();
      const guestToken = params.guest_access_token;
      // Parameters taken from the session were checked when they were sent, but the name may have been taken since.
      if (name !== undefined && name !== localpart) await checkUsername(name, guestToken, undefined);
      if (guestToken !== undefined && name !== undefined) {
        userId = `@${name}:${config.server_name}`;
        if (!(await upgradeGuestUser(storage.db, userId, passwordHash)))
          throw new MatrixError('M_FORBIDDEN', 'This guest account cannot be upgraded');
      } else {
        userId = await createAccount(storage.db, {
          localpart: name ?? `u${randomBytes(6).toString('hex')}`,
          serverName: config.server_name,
          password: null,
          passwordHash,
        });
      }
      await uia.setSessionData(result.sessionId, REGISTERED_USER_ID, userId);
      const token = result.data.registration_token;
      if (config.registration_requires_token && token !== undefined)
        await useRegistrationToken(storage.db, token);
    }
    if (params.inhibit_login) return { user_id: userId, home_server: config.server_name };
    const session = await createSession(storage.db, {
      userId,
      deviceId: params.device_id,
      displayName: params.initial_device_display_name,
      refreshToken: (body.refresh_token ?? params.refresh_token) === true,
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
    checkUserNotExclusive(deps.appServices, `@${localpart}:${config.server_name}`);
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
