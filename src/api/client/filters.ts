/** Sync filters (client-server API "Filtering"): upload and download. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { getFilter, insertFilter } from '../../storage/filters.js';
import { validateFilter } from '../../sync/filter.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden, MatrixError, notFound } from '../errors.js';
import { parseParams } from '../validate.js';

const MAX_FILTER_BYTES = 65_536;

const UserParams = z.object({ userId: z.string() });
const FilterParams = z.object({ userId: z.string(), filterId: z.string() });

/** Filter ids are decimal integers; anything else names no filter. */
const FILTER_ID = /^(0|[1-9][0-9]{0,14})$/;

export function filterRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'storage' | 'auth'>): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** POST /_matrix/client/v3/user/{userId}/filter */
  app.post('/_matrix/client/v3/user/:userId/filter', guard, async (req) => {
    const { userId } = parseParams(UserParams, req.params);
    if (userId !== requester(req).userId) throw forbidden('Cannot create filters for other users');
    if (Buffer.byteLength(JSON.stringify(req.body ?? {})) > MAX_FILTER_BYTES) {
      throw new MatrixError('M_TOO_LARGE', `Filter too large (the limit is ${MAX_FILTER_BYTES} bytes)`);
    }
    const filter = validateFilter(req.body);
    const id = await insertFilter(deps.storage.db, userId, JSON.stringify(filter));
    return { filter_id: String(id) };
  });

  /** GET /_matrix/client/v3/user/{userId}/filter/{filterId} */
  app.get('/_matrix/client/v3/user/:userId/filter/:filterId', guard, async (req) => {
    const { userId, filterId } = parseParams(FilterParams, req.params);
    if (userId !== requester(req).userId) throw forbidden('Cannot get filters for other users');
    const json = FILTER_ID.test(filterId)
      ? await getFilter(deps.storage.db, userId, Number(filterId))
      : undefined;
    if (json === undefined) throw notFound('No such filter');
    return JSON.parse(json) as unknown;
  });
}
