/**
 * Registration and login of application service users (spec "Server admin style permissions"): `m.login.application_service`
 * with the AS's as_token creates a password-less user of its users namespace, or logs one in; ordinary registration
 * of a user id in an exclusive namespace is refused with M_EXCLUSIVE.
 */
import type { FastifyRequest } from 'fastify';
import { createAccount, validateLocalpart } from '../accounts/register.js';
import { createSession, type SessionTokens } from '../accounts/sessions.js';
import { bearerToken } from './auth.js';
import type { ApiDeps } from './context.js';
import { MatrixError } from './errors.js';
import { getUser } from '../storage/users.js';
import type { AppService, AppServiceRegistry } from '../appservice/registration.js';

export const APPSERVICE_LOGIN_TYPE = 'm.login.application_service';

type Deps = Pick<ApiDeps, 'config' | 'storage' | 'appServices'>;

/** 400 M_EXCLUSIVE when `userId` is held exclusively by an application service other than `allowed`. */
export function checkUserNotExclusive(
  registry: AppServiceRegistry | undefined,
  userId: string,
  allowed?: AppService,
): void {
  const owner = registry?.exclusiveUserOwner(userId);
  if (owner && owner !== allowed)
    throw new MatrixError('M_EXCLUSIVE', 'This user ID is reserved by an application service');
}

/** The AS whose as_token the request carries: 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise. */
export function requestAppService(deps: Deps, req: FastifyRequest): AppService {
  const token = bearerToken(req);
  if (!token) throw new MatrixError('M_MISSING_TOKEN', 'Missing access token');
  const as = deps.appServices?.byToken(token);
  if (!as) throw new MatrixError('M_UNKNOWN_TOKEN', 'Unrecognised access token', { soft_logout: false });
  return as;
}

/** A user id of the AS's users namespace named by a localpart or a full id; else 400 M_EXCLUSIVE. */
function namespacedUser(deps: Deps, as: AppService, name: string): string {
  const { server_name: serverName } = deps.config;
  const userId = name.startsWith('@') ? name : `@${name}:${serverName}`;
  if (!userId.endsWith(`:${serverName}`))
    throw new MatrixError('M_EXCLUSIVE', 'Application services can only act on local users');
  if (!deps.appServices?.isInterestedInUser(as, userId))
    throw new MatrixError('M_EXCLUSIVE', 'User ID is not in the namespace of this application service');
  checkUserNotExclusive(deps.appServices, userId, as);
  return userId;
}

export interface AppServiceRegisterBody {
  username?: string | undefined;
  device_id?: string | undefined;
  initial_device_display_name?: string | undefined;
  inhibit_login?: boolean | undefined;
  refresh_token?: boolean | undefined;
}

/** POST /register with type m.login.application_service. */
export async function registerAppServiceUser(
  deps: Deps,
  req: FastifyRequest,
  body: AppServiceRegisterBody & { user?: unknown },
): Promise<SessionTokens | { user_id: string; home_server: string }> {
  const as = requestAppService(deps, req);
  // The AS API once named the user `user`; Synapse still accepts it before `username`.
  const name = typeof body.user === 'string' ? body.user : body.username;
  if (name === undefined || name === '')
    throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: username');
  const userId = namespacedUser(deps, as, name);
  const localpart = userId.slice(1, userId.lastIndexOf(':'));
  // Numeric localparts are fine for bridged users (they are not guests).
  validateLocalpart(localpart, deps.config.server_name, true);
  await createAccount(deps.storage.db, { localpart, serverName: deps.config.server_name, password: null });
  const home_server = deps.config.server_name;
  if (body.inhibit_login) return { user_id: userId, home_server };
  return { ...(await newSession(deps, userId, body)), home_server };
}

function newSession(deps: Deps, userId: string, body: AppServiceRegisterBody): Promise<SessionTokens> {
  return createSession(deps.storage.db, {
    userId,
    deviceId: body.device_id,
    displayName: body.initial_device_display_name,
    refreshToken: body.refresh_token === true,
    accessTokenLifetimeMs: deps.config.access_token_lifetime_ms,
    refreshTokenLifetimeMs: deps.config.refresh_token_lifetime_ms,
  });
}

/** POST /login with type m.login.application_service: `identifier.user` (or `user`) in the AS's namespace. */
export async function loginAppServiceUser(
  deps: Deps,
  req: FastifyRequest,
  body: AppServiceRegisterBody & {
    identifier?: { type: string; user?: unknown } | undefined;
    user?: unknown;
  },
): Promise<SessionTokens> {
  const as = requestAppService(deps, req);
  const raw = body.identifier !== undefined ? body.identifier.user : body.user;
  if (body.identifier !== undefined && body.identifier.type !== 'm.id.user')
    throw new MatrixError('M_UNKNOWN', `Unsupported identifier type ${body.identifier.type}`, {}, 400);
  if (typeof raw !== 'string' || raw === '')
    throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: identifier.user');
  const userId = namespacedUser(deps, as, raw);
  const user = await getUser(deps.storage.db, userId);
  if (!user) throw new MatrixError('M_FORBIDDEN', 'Invalid username or password');
  if (user.deactivated) throw new MatrixError('M_USER_DEACTIVATED', 'This account has been deactivated');
  return newSession(deps, userId, body);
}
