/** GET /_matrix/client/v3/sync */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { getFilter } from '../../storage/filters.js';
import { setPresenceFromSync } from './presence.js';
import { validateFilter, type Filter } from '../../sync/filter.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseQuery } from '../validate.js';

const MAX_TIMEOUT_MS = 10 * 60_000;

const boolParam = z.enum(['true', 'false']).transform((v) => v === 'true');

const SyncQuery = z.looseObject({
  since: z.string().optional(),
  timeout: z.coerce.number().int().min(0).optional(),
  full_state: boolParam.optional(),
  set_presence: z.enum(['online', 'offline', 'unavailable']).optional(),
  filter: z.string().optional(),
  use_state_after: boolParam.optional(),
});

async function resolveFilter(
  deps: Pick<ApiDeps, 'storage'>,
  userId: string,
  raw: string | undefined,
): Promise<Filter> {
  if (raw === undefined || raw === '') return {};
  if (raw.trimStart().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new MatrixError('M_INVALID_PARAM', 'filter is neither a filter id nor valid JSON');
    }
    return validateFilter(parsed);
  }
  if (!/^\d{1,15}$/.test(raw)) throw new MatrixError('M_INVALID_PARAM', 'Invalid filter id');
  const json = await getFilter(deps.storage.db, userId, Number(raw));
  if (json === undefined) throw new MatrixError('M_INVALID_PARAM', `No filter with id ${raw}`);
  try {
    return validateFilter(JSON.parse(json));
  } catch {
    return {};
  }
}

export function syncRoutes(app: FastifyInstance, deps: ApiDeps): void {
  /** GET /_matrix/client/v3/sync */
  app.get('/_matrix/client/v3/sync', { preHandler: deps.auth.requireUser }, async (req) => {
    const r = requester(req);
    const q = parseQuery(SyncQuery, req.query);
    const filter = await resolveFilter(deps, r.userId, q.filter);
    // Marking the user online is a side effect: a failed write (read-only or full database) must not fail the sync.
    await setPresenceFromSync(deps, r.userId, q.set_presence ?? 'online').catch((err: unknown) =>
      req.log.warn({ err }, 'could not update presence from /sync'),
    );
    return deps.sync.sync({
      userId: r.userId,
      deviceId: r.deviceId,
      since: q.since,
      timeoutMs: Math.min(q.timeout ?? 0, MAX_TIMEOUT_MS),
      fullState: q.full_state ?? false,
      filter,
      useStateAfter: q.use_state_after ?? false,
    });
  });
}
