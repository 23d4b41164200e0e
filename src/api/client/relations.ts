/**
 * Relationships (client-server API "Forming relationships between events", threading, edits, references):
 * the relations and threads endpoints, and the bundled aggregations that every event-serving endpoint adds.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  formatEvents,
  paginateWith,
  readHead,
  roomAccess,
  visDeps,
  type ReadDeps,
} from '../../read/room-pagination.js';
import { childIds, nidsByEventIds, relationChildren, threadRoots } from '../../read/room-queries.js';
import { formatStreamToken, parseStreamToken } from '../../read/tokens.js';
import { filterVisible } from '../../read/visibility.js';
import { withoutIgnored } from '../../sync/ignored.js';
import { bundleAggregations } from '../../read/aggregations.js';
import { isValidEventId } from '../../rooms/identifiers.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { invalidParam, notFound } from '../errors.js';
import { limitParam, parseParams, parseQuery } from '../validate.js';

const RECURSION_DEPTH = 3;

const RelationsParams = z.object({
  roomId: z.string(),
  eventId: z.string(),
  relType: z.string().optional(),
  eventType: z.string().optional(),
});
const RelationsQuery = z.object({
  from: z.string().optional(),
  to: z.string().optional(),
  limit: limitParam(5, 1000),
  dir: z.enum(['b', 'f']).default('b'),
  recurse: z.enum(['true', 'false']).optional(),
});
const ThreadsQuery = z.object({
  include: z.enum(['all', 'participated']).default('all'),
  from: z.string().optional(),
  limit: limitParam(10, 100),
});

/** Event ids relating to `root` directly or through up to RECURSION_DEPTH - 1 intermediate events. */
async function relationParents(deps: ReadDeps, roomNid: number, root: string): Promise<string[]> {
  const all = new Set([root]);
  let level = [root];
  for (let d = 1; d < RECURSION_DEPTH && level.length; d++) {
    level = (await childIds(deps.storage.db, roomNid, level)).filter((id) => !all.has(id));
    for (const id of level) all.add(id);
  }
  return [...all];
}

export function relationRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] */
  const relations = async (req: FastifyRequest) => {
    const r = requester(req);
    const p = parseParams(RelationsParams, req.params);
    const q = parseQuery(RelationsQuery, req.query);
    // Event ids are opaque to clients: only an empty one is malformed; any other unknown one is not found.
    if (p.eventId === '') throw invalidParam('Missing event id');
    if (!isValidEventId(p.eventId)) throw notFound('Event not found');
    const access = await roomAccess(deps, p.roomId, r.userId);
    const parent = await deps.reader.byId(p.eventId);
    const parentVisible =
      parent &&
      parent.roomId === p.roomId &&
      parent.streamOrdering !== null &&
      (access.cap === undefined || parent.streamOrdering <= access.cap) &&
      (await filterVisible(visDeps(deps), r.userId, [parent])).length;
    if (!parentVisible) throw notFound('Event not found');
    const from = q.from === undefined ? undefined : parseStreamToken(q.from, 'from').pos;
    const to = q.to === undefined ? undefined : parseStreamToken(q.to, 'to').pos;
    const parentIds =
      q.recurse === 'true' ? await relationParents(deps, access.room.roomNid, p.eventId) : [p.eventId];
    const page = await paginateWith(
      deps,
      access,
      { dir: q.dir, from: from ?? (q.dir === 'b' ? readHead(deps, access) : 0), to, limit: q.limit },
      (after, upto, dir, limit) =>
        relationChildren(deps.storage.db, access.room.roomNid, {
          parentIds,
          relType: p.relType,
          eventType: p.eventType,
          after,
          upto,
          dir,
          limit,
        }),
    );
    const shown = await withoutIgnored(deps.storage.db, r.userId, page.events);
    const chunk = await bundleAggregations(deps, await formatEvents(deps, shown, r), r);
    return {
      chunk,
      ...(page.next !== undefined ? { next_batch: formatStreamToken(page.next) } : {}),
      ...(q.from !== undefined ? { prev_batch: q.from } : {}),
      ...(q.recurse !== undefined ? { recursion_depth: q.recurse === 'true' ? RECURSION_DEPTH : 1 } : {}),
    };
  };
  app.get('/_matrix/client/v1/rooms/:roomId/relations/:eventId', guard, relations);
  app.get('/_matrix/client/v1/rooms/:roomId/relations/:eventId/:relType', guard, relations);
  app.get('/_matrix/client/v1/rooms/:roomId/relations/:eventId/:relType/:eventType', guard, relations);

  /** GET /_matrix/client/v1/rooms/{roomId}/threads */
  app.get('/_matrix/client/v1/rooms/:roomId/threads', guard, async (req) => {
    const r = requester(req);
    const { roomId } = parseParams(z.object({ roomId: z.string() }), req.params);
    const q = parseQuery(ThreadsQuery, req.query);
    const access = await roomAccess(deps, roomId, r.userId);
    const head = readHead(deps, access);
    const upto = q.from === undefined ? head : Math.min(head, parseStreamToken(q.from, 'from').pos);
    const limit = Math.max(1, q.limit);
    const participant = q.include === 'participated' ? r.userId : undefined;
    const rows = await threadRoots(deps.storage.db, access.room.roomNid, {
      upto,
      cap: access.cap,
      limit: limit + 1,
      participant,
    });
    const page = rows.slice(0, limit);
    const nids = await nidsByEventIds(
      deps.storage.db,
      page.map((t) => t.rootId),
    );
    const roots = (await deps.reader.listByNids(page.flatMap((t) => nids.get(t.rootId) ?? []))).filter(
      (ev) => ev.roomId === roomId,
    );
    const visible = await withoutIgnored(
      deps.storage.db,
      r.userId,
      await filterVisible(visDeps(deps), r.userId, roots),
    );
    const chunk = await bundleAggregations(deps, await formatEvents(deps, visible, r), r);
    const last = page[page.length - 1];
    return {
      chunk,
      ...(rows.length > limit && last ? { next_batch: formatStreamToken(last.latestPos - 1) } : {}),
    };
  });
}
