/**
 * Simplified sliding sync (MSC4186):
 * POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync (Synapse's experimental API: Element X,
 * matrix-js-sdk) and POST /_matrix/client/v4/sync (the proposal's API). Both validate at the edge into one request
 * form (src/sync/sliding/request.ts) and share one service.
 */
import type { FastifyInstance } from 'fastify';
import { filterVisible } from '../../read/visibility.js';
import { computeExtensions } from '../../sync/sliding/extensions.js';
import { SlidingSyncService } from '../../sync/sliding/service.js';
import { parseUnstable, parseV4, type SlidingRequest } from '../../sync/sliding/request.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { setPresenceFromSync } from './presence.js';

export const SLIDING_SYNC_UNSTABLE_FEATURE = 'org.matrix.simplified_msc3575';

export function slidingSyncRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const service = new SlidingSyncService(
    {
      storage: deps.storage,
      reader: deps.reader,
      notifier: deps.notifier,
      typing: deps.typing,
      presenceEnabled: deps.config.presence.enabled,
      roomChanges: deps.roomChanges,
      visible: (userId, events) =>
        filterVisible({ reader: deps.reader, db: deps.storage.db }, userId, events),
    },
    computeExtensions,
  );
  // Positions are saved after their answer is sent: the last saves finish before the database closes.
  app.addHook('onClose', async () => {
    await service.drain();
  });
  const run = async (
    req: SlidingRequest,
    userId: string,
    deviceId: string,
    log: { warn: (o: object, m: string) => void },
  ) => {
    // Marking the user online is a side effect: a failed write must not fail the sync.
    await setPresenceFromSync(deps, userId, req.setPresence).catch((err: unknown) =>
      log.warn({ err }, 'could not update presence from sliding sync'),
    );
    return service.sync(req, userId, deviceId);
  };

  /** POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync */
  app.post(
    '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync',
    { preHandler: deps.auth.requireUser },
    async (req) => {
      const r = requester(req);
      return run(parseUnstable(req.body, req.query, r.userId), r.userId, r.deviceId, req.log);
    },
  );

  /** POST /_matrix/client/v4/sync */
  app.post('/_matrix/client/v4/sync', { preHandler: deps.auth.requireUser }, async (req) => {
    const r = requester(req);
    return run(parseV4(req.body), r.userId, r.deviceId, req.log);
  });
}
