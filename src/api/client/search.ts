/** Server-side search (client-server API "Server Side Search"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { searchRoomEvents } from '../../read/search.js';
import { RoomEventFilterSchema, type RoomEventFilter } from '../../sync/filter.js';
import { syncExclusions } from '../../sync/ignored.js';
import type { Storage } from '../../storage/db.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseBody, parseQuery } from '../validate.js';

const RoomEventsCriteria = z.looseObject({
  search_term: z.string(),
  keys: z.array(z.enum(['content.body', 'content.name', 'content.topic'])).optional(),
  filter: RoomEventFilterSchema.optional(),
  order_by: z.enum(['recent', 'rank']).optional(),
  event_context: z
    .looseObject({
      before_limit: z.int().min(0).optional(),
      after_limit: z.int().min(0).optional(),
      include_profile: z.boolean().optional(),
    })
    .optional(),
  include_state: z.boolean().optional(),
  groupings: z
    .looseObject({
      group_by: z.array(z.looseObject({ key: z.enum(['room_id', 'sender']) })).optional(),
    })
    .optional(),
});

const SearchBody = z.looseObject({
  search_categories: z.looseObject({ room_events: RoomEventsCriteria }),
});

const SearchQuery = z.looseObject({ next_batch: z.string().optional() });

/** The search filter with the users `userId` ignores added to its `not_senders`. */
async function withIgnoredSenders(
  db: Storage['db'],
  userId: string,
  filter: RoomEventFilter | undefined,
): Promise<RoomEventFilter | undefined> {
  const { ignored } = await syncExclusions(db, userId);
  if (ignored.size === 0) return filter;
  return { ...filter, not_senders: [...(filter?.not_senders ?? []), ...ignored] };
}

export function searchRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'auth' | 'storage' | 'reader'>): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** POST /_matrix/client/v3/search */
  app.post('/_matrix/client/v3/search', guard, async (req) => {
    const r = requester(req);
    const { next_batch } = parseQuery(SearchQuery, req.query);
    const c = parseBody(SearchBody, req.body).search_categories.room_events;
    const ctx = c.event_context;
    const room_events = await searchRoomEvents(
      deps,
      r.userId,
      {
        searchTerm: c.search_term,
        keys: c.keys,
        // Ignored users' events are left out (their state events too, unlike elsewhere: a small loss in search).
        filter: await withIgnoredSenders(deps.storage.db, r.userId, c.filter),
        orderBy: c.order_by ?? 'rank',
        eventContext: ctx && {
          beforeLimit: ctx.before_limit ?? 5,
          afterLimit: ctx.after_limit ?? 5,
          includeProfile: ctx.include_profile ?? false,
        },
        includeState: c.include_state ?? false,
        groupBy: [...new Set((c.groupings?.group_by ?? []).map((g) => g.key))],
      },
      next_batch,
    );
    return { search_categories: { room_events } };
  });
}
