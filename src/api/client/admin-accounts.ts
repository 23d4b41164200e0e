/**
 * The client-server admin API of v1.18 ("Server administration"): GET/PUT /_matrix/client/v1/admin/lock/{userId} and
 * /admin/suspend/{userId}. Server admins only; local, existing, active users only (400 M_INVALID_PARAM for another
 * server's user, 404 for an unknown or deactivated one); an admin may not change their own status nor another
 * admin's (403). A lock takes effect on the next request of every session of the user (api/auth.ts answers 401
 * M_USER_LOCKED with soft_logout); a suspension through the gate of account-suspension.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseUserId } from '../../rooms/identifiers.js';
import { isSuspended, setSuspended } from '../../storage/suspensions.js';
import { getUser } from '../../storage/users.js';
import type { UserRow } from '../../storage/schema.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden, invalidParam, notFound } from '../errors.js';
import { parseBody } from '../validate.js';

const LockBody = z.looseObject({ locked: z.boolean() });
const SuspendBody = z.looseObject({ suspended: z.boolean() });

type UserParams = { Params: { userId: string } };

export function adminAccountRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'config' | 'storage' | 'auth'>,
): void {
  const { storage, auth, config } = deps;
  const guard = { preHandler: auth.requireAdmin };

  /** The local, existing, active user of the path. */
  async function target(req: FastifyRequest<UserParams>): Promise<UserRow> {
    const userId = req.params.userId;
    const parsed = parseUserId(userId, { historical: true });
    if (!parsed) throw invalidParam(`Invalid user ID: ${userId}`);
    if (parsed.serverName !== config.server_name)
      throw invalidParam('User ID does not belong to this server');
    const user = await getUser(storage.db, userId);
    if (!user || user.deactivated) throw notFound('User not found');
    return user;
  }

  /** A change of another, non-admin user's status. */
  async function changeable(req: FastifyRequest<UserParams>): Promise<UserRow> {
    const user = await target(req);
    if (user.user_id === requester(req).userId) throw forbidden('You cannot change your own account status');
    if (user.is_admin) throw forbidden('You cannot change the status of another server admin');
    return user;
  }

  /** GET /_matrix/client/v1/admin/lock/{userId} */
  app.get<UserParams>('/_matrix/client/v1/admin/lock/:userId', guard, async (req) => ({
    locked: (await target(req)).locked === 1,
  }));

  /** PUT /_matrix/client/v1/admin/lock/{userId} */
  app.put<UserParams>('/_matrix/client/v1/admin/lock/:userId', guard, async (req) => {
    const body = parseBody(LockBody, req.body);
    const user = await changeable(req);
    await storage.db
      .updateTable('users')
      .set({ locked: body.locked ? 1 : 0 })
      .where('user_id', '=', user.user_id)
      .execute();
    return { locked: body.locked };
  });

  /** GET /_matrix/client/v1/admin/suspend/{userId} */
  app.get<UserParams>('/_matrix/client/v1/admin/suspend/:userId', guard, async (req) => ({
    suspended: await isSuspended(storage.db, (await target(req)).user_id),
  }));

  /** PUT /_matrix/client/v1/admin/suspend/{userId} */
  app.put<UserParams>('/_matrix/client/v1/admin/suspend/:userId', guard, async (req) => {
    const body = parseBody(SuspendBody, req.body);
    const user = await changeable(req);
    await setSuspended(storage.db, user.user_id, body.suspended);
    return { suspended: body.suspended };
  });
}
