/**
 * Shared-secret registration at /_synapse/admin/v1/register, compatible with Synapse's
 * register_new_matrix_user and other tools: GET returns a nonce; POST carries an HMAC-SHA1 over
 * nonce\0username\0password\0(admin|notadmin)[\0user_type] keyed with registration_shared_secret.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { createAccount } from '../../accounts/register.js';
import { constantTimeEqual } from '../../accounts/secrets.js';
import { createSession } from '../../accounts/sessions.js';
import { setProfileField } from '../../storage/users.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { checkUserNotExclusive } from '../appservice-accounts.js';
import { parseBody } from '../validate.js';

const NONCE_LIFETIME_MS = 60_000;

const Body = z.looseObject({
  nonce: z.string(),
  username: z.string(),
  password: z.string(),
  mac: z.string(),
  admin: z.boolean().optional(),
  displayname: z.string().optional(),
  user_type: z.string().nullable().optional(),
});

export function sharedSecretRegisterRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { config, storage } = deps;
  const nonces = new Map<string, number>();

  const secret = (): string => {
    if (!config.registration_shared_secret) {
      throw new MatrixError('M_UNKNOWN', 'Shared secret registration is not enabled', {}, 400);
    }
    return config.registration_shared_secret;
  };

  /** GET /_synapse/admin/v1/register */
  app.get('/_synapse/admin/v1/register', async () => {
    secret();
    const now = Date.now();
    for (const [n, ts] of nonces) if (now - ts > NONCE_LIFETIME_MS) nonces.delete(n);
    const nonce = randomBytes(16).toString('hex');
    nonces.set(nonce, now);
    return { nonce };
  });

  /** POST /_synapse/admin/v1/register */
  app.post('/_synapse/admin/v1/register', async (req) => {
    const key = secret();
    const body = parseBody(Body, req.body);
    const issued = nonces.get(body.nonce);
    if (issued === undefined || Date.now() - issued > NONCE_LIFETIME_MS) {
      throw new MatrixError('M_UNKNOWN', 'unrecognised nonce', {}, 400);
    }
    nonces.delete(body.nonce);
    const parts = [body.nonce, body.username, body.password, body.admin ? 'admin' : 'notadmin'];
    if (body.user_type) parts.push(body.user_type);
    const want = createHmac('sha1', key).update(parts.join('\0')).digest('hex');
    if (!constantTimeEqual(want, body.mac.toLowerCase()))
      throw new MatrixError('M_FORBIDDEN', 'HMAC incorrect');
    checkUserNotExclusive(deps.appServices, `@${body.username.toLowerCase()}:${config.server_name}`);
    const userId = await createAccount(storage.db, {
      localpart: body.username.toLowerCase(),
      serverName: config.server_name,
      password: body.password,
      admin: body.admin ?? false,
      userType: body.user_type ?? null,
    });
    if (body.displayname) await setProfileField(storage.db, userId, 'displayname', body.displayname);
    const session = await createSession(storage.db, {
      userId,
      refreshToken: false,
      accessTokenLifetimeMs: undefined,
      refreshTokenLifetimeMs: undefined,
    });
    return {
      user_id: userId,
      access_token: session.access_token,
      device_id: session.device_id,
      home_server: config.server_name,
    };
  });
}
