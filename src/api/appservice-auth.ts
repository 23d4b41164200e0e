/**
 * Application service identity assertion (spec "Client-Server API Extensions"): a request carrying an as_token acts
 * as the AS's sender user, or with `?user_id=` as a user of its users namespace that exists, and with `?device_id=`
 * (MSC3202's `org.matrix.msc3202.device_id` too) as one of that user's devices.
 */
import type { FastifyRequest } from 'fastify';
import type { Requester } from './auth.js';
import { MatrixError } from './errors.js';
import { getDevice } from '../storage/devices.js';
import { getUser, type Executor } from '../storage/users.js';
import type { AppService, AppServiceRegistry } from '../appservice/registration.js';

function queryString(req: FastifyRequest, key: string): string | undefined {
  const query = req.query as Record<string, unknown> | undefined;
  const v: unknown = query?.[key];
  const first: unknown = Array.isArray(v) ? (v as unknown[])[0] : v;
  return typeof first === 'string' && first !== '' ? first : undefined;
}

/**
 * Timestamp massaging (spec "Timestamp massaging"): the `ts` query parameter of an application service's send and
 * state requests becomes the event's origin_server_ts; ignored for other requesters, as Synapse does.
 */
export function massagedTs(req: { query?: unknown; requester: Requester | null }): number | undefined {
  if (req.requester?.appServiceId === undefined) return undefined;
  const raw: unknown = (req.query as Record<string, unknown> | undefined)?.ts;
  const first: unknown = Array.isArray(raw) ? (raw as unknown[])[0] : raw;
  if (first === undefined) return undefined;
  const ts = typeof first === 'string' && /^\d{1,16}$/.test(first) ? Number(first) : NaN;
  if (!Number.isSafeInteger(ts))
    throw new MatrixError('M_INVALID_PARAM', 'ts must be a timestamp in milliseconds');
  return ts;
}

export async function appServiceRequester(
  db: Executor,
  registry: AppServiceRegistry,
  as: AppService,
  req: FastifyRequest,
): Promise<Requester> {
  const asserted = queryString(req, 'user_id');
  const userId = asserted ?? as.senderUserId;
  if (userId !== as.senderUserId) {
    if (!registry.isInterestedInUser(as, userId))
      throw new MatrixError('M_FORBIDDEN', `Application service cannot masquerade as this user (${userId})`);
    const user = await getUser(db, userId);
    if (!user)
      throw new MatrixError('M_FORBIDDEN', `Application service has not registered this user (${userId})`);
  }
  const deviceId = queryString(req, 'device_id') ?? queryString(req, 'org.matrix.msc3202.device_id');
  if (deviceId !== undefined && !(await getDevice(db, userId, deviceId))) {
    throw new MatrixError(
      'M_UNKNOWN_DEVICE',
      `Application service trying to use a device that doesn't exist ('${deviceId}' for ${userId})`,
    );
  }
  return {
    userId,
    // Without device_id the request has no device (operations that need one fail), as in Synapse.
    deviceId: deviceId ?? '',
    tokenId: 0,
    isAdmin: false,
    isGuest: false,
    appServiceId: as.id,
    exemptFromRateLimits: !as.rateLimited,
  };
}
