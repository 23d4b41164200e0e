/** Password changes, deactivation and third-party identifiers (client-server API "Account management"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { deactivateAccount } from '../../accounts/deactivate.js';
import { removeDevices } from '../../accounts/devices.js';
import { hashPassword } from '../../accounts/secrets.js';
import { listDevices } from '../../storage/devices.js';
import { setPasswordHash } from '../../storage/users.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseBody } from '../validate.js';

const PasswordBody = z.looseObject({
  new_password: z.string().min(1).max(512),
  logout_devices: z.boolean().default(true),
  auth: z.unknown().optional(),
});

const DeactivateBody = z.looseObject({
  auth: z.unknown().optional(),
  erase: z.boolean().optional(),
  id_server: z.string().optional(),
});

export function accountRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { storage, auth, uia } = deps;
  const guard = { preHandler: auth.requireUser };

  /** POST /_matrix/client/v3/account/password */
  app.post('/_matrix/client/v3/account/password', guard, async (req) => {
    const r = requester(req);
    const body = parseBody(PasswordBody, req.body);
    await uia.require({ req, auth: body.auth, flows: [['m.login.password']], userId: r.userId });
    await setPasswordHash(storage.db, r.userId, await hashPassword(body.new_password));
    if (body.logout_devices) {
      const others = (await listDevices(storage.db, r.userId))
        .map((d) => d.device_id)
        .filter((d) => d !== r.deviceId);
      await removeDevices(deps, r.userId, others);
    }
    return {};
  });

  /** POST /_matrix/client/v3/account/deactivate */
  app.post('/_matrix/client/v3/account/deactivate', guard, async (req) => {
    const r = requester(req);
    const body = parseBody(DeactivateBody, req.body);
    await uia.require({ req, auth: body.auth, flows: [['m.login.password']], userId: r.userId });
    await deactivateAccount(deps, r.userId, body.erase === true);
    return { id_server_unbind_result: 'no-support' };
  });

  /** GET /_matrix/client/v3/account/3pid */
  app.get('/_matrix/client/v3/account/3pid', guard, async () => ({ threepids: [] }));
}
