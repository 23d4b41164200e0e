/** Jumping to a date (client-server API "GET /rooms/{roomId}/timestamp_to_event"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { roomAccess, visDeps } from '../../read/room-pagination.js';
import { eventsNearTs } from '../../read/room-queries.js';
import { filterVisible } from '../../read/visibility.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { notFound } from '../errors.js';
import { parseParams, parseQuery } from '../validate.js';

const Params = z.object({ roomId: z.string() });
const Query = z.object({
  ts: z.coerce.number().int().min(0),
  dir: z.enum(['f', 'b']),
});

/** Candidates examined for the nearest visible event. */
const CANDIDATES = 100;

export function timestampRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event */
  app.get('/_matrix/client/v1/rooms/:roomId/timestamp_to_event', guard, async (req) => {
    const r = requester(req);
    const { roomId } = parseParams(Params, req.params);
    const { ts, dir } = parseQuery(Query, req.query);
    const access = await roomAccess(deps, roomId, r.userId);
    const positions = await eventsNearTs(deps.storage.db, access.room.roomNid, ts, dir, CANDIDATES);
    const readable = positions.filter((p) => access.cap === undefined || p.pos <= access.cap);
    const loaded = await deps.reader.listByNids(readable.map((p) => p.nid));
    const [found] = await filterVisible(visDeps(deps), r.userId, loaded);
    if (!found) {
      throw notFound(`Unable to find event from ${ts} in ${dir === 'f' ? 'forward' : 'backward'} direction`);
    }
    return { event_id: found.eventId, origin_server_ts: found.pdu.origin_server_ts };
  });
}
