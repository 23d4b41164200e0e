/** Key management (client-server API "End-to-End Encryption > Key management API"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { claimKeys, DEFAULT_REMOTE_KEYS_TIMEOUT_MS, queryKeys, uploadKeys } from '../../e2ee/keys.js';
import { deviceListDelta } from '../../e2ee/device-lists.js';
import { parseStreamToken } from '../../read/tokens.js';
import type { JsonObject } from '../../rooms/event.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody, parseQuery } from '../validate.js';

const JsonObj = z.record(z.string(), z.unknown());

const UploadBody = z.looseObject({
  device_keys: JsonObj.optional(),
  one_time_keys: JsonObj.optional(),
  fallback_keys: JsonObj.optional(),
});
const QueryBody = z.looseObject({
  device_keys: z.record(z.string(), z.array(z.string())),
  timeout: z.number().optional(),
});
const ClaimBody = z.looseObject({
  one_time_keys: z.record(z.string(), z.record(z.string(), z.string())),
  timeout: z.number().optional(),
});
const ChangesQuery = z.object({ from: z.string(), to: z.string() });

/** The client's `timeout` for other servers (ms), bounded to 1 s..60 s; Synapse's 10 s by default. */
function remoteTimeout(timeout: number | undefined): number {
  if (timeout === undefined || !Number.isFinite(timeout)) return DEFAULT_REMOTE_KEYS_TIMEOUT_MS;
  return Math.min(Math.max(timeout, 1_000), 60_000);
}

export function keysRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };
  const serverName = deps.config.server_name;

  /** POST /_matrix/client/v3/keys/upload */
  app.post('/_matrix/client/v3/keys/upload', guard, async (req) => {
    const r = requester(req);
    const body = parseBody(UploadBody, req.body);
    // An application service acting without device_id has no device to upload keys for (as Synapse).
    if (r.deviceId === '')
      throw new MatrixError(
        'M_UNKNOWN',
        'To upload keys, you must pass device_id when authenticating',
        {},
        400,
      );
    return uploadKeys(deps, r.userId, r.deviceId, {
      device_keys: body.device_keys as JsonObject | undefined,
      one_time_keys: body.one_time_keys,
      fallback_keys: body.fallback_keys,
    });
  });

  /** POST /_matrix/client/v3/keys/query */
  app.post('/_matrix/client/v3/keys/query', guard, async (req) => {
    const body = parseBody(QueryBody, req.body);
    return queryKeys(
      deps,
      requester(req).userId,
      serverName,
      body.device_keys,
      deps.remoteKeys,
      remoteTimeout(body.timeout),
    );
  });

  /** POST /_matrix/client/v3/keys/claim */
  app.post('/_matrix/client/v3/keys/claim', guard, async (req) => {
    const body = parseBody(ClaimBody, req.body);
    return claimKeys(deps, serverName, body.one_time_keys, deps.remoteKeys, remoteTimeout(body.timeout));
  });

  /** GET /_matrix/client/v3/keys/changes */
  app.get('/_matrix/client/v3/keys/changes', guard, async (req) => {
    const q = parseQuery(ChangesQuery, req.query);
    const current = deps.storage.stream.current;
    const from = Math.min(parseStreamToken(q.from, 'from').pos, current);
    const to = Math.min(parseStreamToken(q.to, 'to').pos, current);
    return deviceListDelta(deps.storage.db, requester(req).userId, from, to);
  });
}
