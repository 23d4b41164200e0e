/**
 * The federation key endpoints, for this server's users only (server-server API "End-to-End Encryption"):
 * POST /_matrix/federation/v1/user/keys/query, POST /user/keys/claim, GET /user/devices/{userId}. Requested users
 * of other servers are left out of the answers.
 */
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import type { E2eeDeps } from '../../e2ee/device-lists.js';
import { claimKeys, queryKeys } from '../../e2ee/keys.js';
import type { JsonObject } from '../../rooms/event.js';
import { parseUserId } from '../../rooms/identifiers.js';
import { latestDeviceListChange } from '../../storage/federation-queue.js';
import { listDevices } from '../../storage/devices.js';
import { getUser } from '../../storage/users.js';
import { parseBody, parseParams } from '../../util/validate.js';
import { MatrixError } from '../errors.js';

export interface UserKeysDeps extends E2eeDeps {
  serverName: string;
  authenticate: preHandlerAsyncHookHandler;
}

const QueryBody = z.looseObject({ device_keys: z.record(z.string(), z.array(z.string())) });
const ClaimBody = z.looseObject({ one_time_keys: z.record(z.string(), z.record(z.string(), z.string())) });
const DevicesParams = z.object({ userId: z.string() });

function onlyLocal<T>(wanted: Record<string, T>, serverName: string): Record<string, T> {
  return Object.fromEntries(
    Object.entries(wanted).filter(([u]) => parseUserId(u, { historical: true })?.serverName === serverName),
  );
}

export function userKeysRoutes(app: FastifyInstance, deps: UserKeysDeps): void {
  const opts = { preHandler: deps.authenticate };

  app.post('/_matrix/federation/v1/user/keys/query', opts, async (req) => {
    const { device_keys: wanted } = parseBody(QueryBody, req.body);
    // No requester: signatures only the user may see and user-signing keys are not served to other servers.
    const res = await queryKeys(deps, '', deps.serverName, onlyLocal(wanted, deps.serverName));
    return {
      device_keys: res.device_keys,
      master_keys: res.master_keys,
      self_signing_keys: res.self_signing_keys,
    };
  });

  app.post('/_matrix/federation/v1/user/keys/claim', opts, async (req) => {
    const { one_time_keys: wanted } = parseBody(ClaimBody, req.body);
    const res = await claimKeys(deps, deps.serverName, onlyLocal(wanted, deps.serverName));
    return { one_time_keys: res.one_time_keys };
  });

  app.get('/_matrix/federation/v1/user/devices/:userId', opts, async (req) => {
    const { userId } = parseParams(DevicesParams, req.params);
    const parsed = parseUserId(userId, { historical: true });
    if (!parsed) throw new MatrixError('M_INVALID_PARAM', `Invalid user ID: ${userId}`);
    if (parsed.serverName !== deps.serverName)
      throw new MatrixError('M_FORBIDDEN', 'Can only query the devices of users of this server');
    const { db } = deps.storage;
    if (!(await getUser(db, userId))) throw new MatrixError('M_NOT_FOUND', 'Unknown user');
    const keys = (await queryKeys(deps, '', deps.serverName, { [userId]: [] })) as {
      device_keys: Record<string, Record<string, JsonObject>>;
      master_keys: Record<string, JsonObject>;
      self_signing_keys: Record<string, JsonObject>;
    };
    const deviceKeys = keys.device_keys[userId] ?? {};
    // `keys` is required for every listed device (Synapse reads it unguarded): as Synapse, a device that has not
    // uploaded keys is not listed.
    const devices = (await listDevices(db, userId)).flatMap((d) => {
      const k = deviceKeys[d.device_id];
      if (!k) return [];
      return [
        {
          device_id: d.device_id,
          keys: Object.fromEntries(Object.entries(k).filter(([f]) => f !== 'unsigned')),
          ...(d.display_name !== null ? { device_display_name: d.display_name } : {}),
        },
      ];
    });
    const master = keys.master_keys[userId];
    const selfSigning = keys.self_signing_keys[userId];
    return {
      user_id: userId,
      stream_id: await latestDeviceListChange(db, userId),
      devices,
      ...(master ? { master_key: master } : {}),
      ...(selfSigning ? { self_signing_key: selfSigning } : {}),
    };
  });
}
