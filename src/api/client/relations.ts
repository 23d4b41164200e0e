/**
 * Relationships (client-server API "Forming relationships between events", threading, edits, references):
 * the relations and threads endpoints, and the bundled aggregations that every event-serving endpoint adds.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { LoadedEvent } from '../../read/event-reader.js';
import {
  formatEvents,
  paginateWith,
  readHead,
  roomAccess,
  visDeps,
  type ReadDeps,
  type Viewer,
} from '../../read/room-pagination.js';
import {
  childIds,
  childrenOf,
  nidsByEventIds,
  nidsByPositions,
  relationChildren,
  threadRoots,
  threadSummaries,
} from '../../read/room-queries.js';
import { formatStreamToken, parseStreamToken } from '../../read/tokens.js';
import { filterVisible } from '../../read/visibility.js';
import type { ClientEvent, JsonObject } from '../../rooms/event.js';
import { isValidEventId } from '../../rooms/identifiers.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { invalidParam, notFound } from '../errors.js';
import { parseParams, parseQuery } from '../validate.js';

const RECURSION_DEPTH = 3;

const Limit = (def: number, max: number) =>
  z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .transform((n) => Math.min(n ?? def, max));

const RelationsParams = z.object({
  roomId: z.string(),
  eventId: z.string(),
  relType: z.string().optional(),
  eventType: z.string().optional(),
});
const RelationsQuery = z.object({
  from: z.string().optional(),
  to: z.string().optional(),
  limit: Limit(5, 1000),
  dir: z.enum(['b', 'f']).default('b'),
  recurse: z.enum(['true', 'false']).optional(),
});
const ThreadsQuery = z.object({
  include: z.enum(['all', 'participated']).default('all'),
  from: z.string().optional(),
  limit: Limit(10, 100),
});

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function relationOf(ev: LoadedEvent): JsonObject | undefined {
  const rel = ev.pdu.content['m.relates_to'];
  return isObject(rel) ? rel : undefined;
}

/** Validity of a replacement event (client-server API "Validity of replacement events"). */
function validEdit(edit: LoadedEvent, original: ClientEvent): boolean {
  if (edit.pdu.sender !== original.sender || edit.pdu.type !== original.type) return false;
  if (edit.pdu.state_key !== undefined || original.state_key !== undefined) return false;
  if (relationOf(edit)?.rel_type !== 'm.replace') return false;
  const origRel = original.content['m.relates_to'];
  if (isObject(origRel) && origRel.rel_type === 'm.replace') return false;
  return edit.pdu.type === 'm.room.encrypted' || isObject(edit.pdu.content['m.new_content']);
}

const newer = (a: LoadedEvent, b: LoadedEvent): boolean =>
  a.pdu.origin_server_ts !== b.pdu.origin_server_ts
    ? a.pdu.origin_server_ts > b.pdu.origin_server_ts
    : a.eventId > b.eventId;

/**
 * Adds `unsigned.m.relations` (m.thread, m.replace, m.reference) to each event that has children, in place,
 * and returns the events. Reusable by /sync: `events` are client-format events the viewer may see.
 */
export async function bundleAggregations(
  deps: ReadDeps,
  events: ClientEvent[],
  viewer: Viewer,
  depth = 0,
): Promise<ClientEvent[]> {
  const ids = events.map((e) => e.event_id);
  if (ids.length === 0) return events;
  const db = deps.storage.db;
  const [children, threads] = await Promise.all([
    childrenOf(db, ids, ['m.replace', 'm.reference']),
    threadSummaries(db, ids, viewer.userId),
  ]);
  if (children.length === 0 && threads.size === 0) return events;
  const latestNids = await nidsByPositions(
    db,
    [...threads.values()].map((t) => t.latestPos),
  );
  const loaded = await deps.reader.byNids([
    ...children.filter((c) => c.relType === 'm.replace').map((c) => c.nid),
    ...latestNids.values(),
  ]);
  const visible = new Set(
    (await filterVisible(visDeps(deps), viewer.userId, [...loaded.values()])).map((e) => e.nid),
  );
  const latestEvents: LoadedEvent[] = [];
  for (const nid of latestNids.values()) {
    const ev = loaded.get(nid);
    if (ev && visible.has(nid)) latestEvents.push(ev);
  }
  const formattedLatest = await formatEvents(deps, latestEvents, viewer);
  if (depth === 0) await bundleAggregations(deps, formattedLatest, viewer, depth + 1);
  const latestById = new Map(formattedLatest.map((e) => [e.event_id, e]));

  for (const ev of events) {
    const rel: JsonObject = {};
    const redacted = isObject(ev.unsigned) && ev.unsigned.redacted_because !== undefined;
    const thread = threads.get(ev.event_id);
    const latestNid = thread ? latestNids.get(thread.latestPos) : undefined;
    const latest = latestNid === undefined ? undefined : loaded.get(latestNid);
    const latestClient = latest ? latestById.get(latest.eventId) : undefined;
    if (thread && latestClient) {
      rel['m.thread'] = {
        latest_event: latestClient,
        count: thread.count,
        current_user_participated: thread.participated || ev.sender === viewer.userId,
      };
    }
    let edit: LoadedEvent | undefined;
    const refs: { event_id: string }[] = [];
    for (const c of children) {
      if (c.parentId !== ev.event_id) continue;
      if (c.relType === 'm.reference') refs.push({ event_id: c.eventId });
      const cand = c.relType === 'm.replace' ? loaded.get(c.nid) : undefined;
      if (cand && visible.has(cand.nid) && !redacted && validEdit(cand, ev) && (!edit || newer(cand, edit))) {
        edit = cand;
      }
    }
    if (edit) rel['m.replace'] = (await formatEvents(deps, [edit], viewer))[0];
    if (refs.length) rel['m.reference'] = { chunk: refs };
    if (Object.keys(rel).length) ev.unsigned = { ...ev.unsigned, 'm.relations': rel };
  }
  return events;
}

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
    if (!isValidEventId(p.eventId)) throw invalidParam(`Invalid event id: ${p.eventId}`);
    const access = await roomAccess(deps, p.roomId, r.userId);
    const parent = await deps.reader.byId(p.eventId);
    const parentVisible =
      parent && parent.roomId === p.roomId && (await filterVisible(visDeps(deps), r.userId, [parent])).length;
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
    const chunk = await bundleAggregations(deps, await formatEvents(deps, page.events, r), r);
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
    const rows = await threadRoots(deps.storage.db, access.room.roomNid, upto, limit + 1, participant);
    const page = rows.slice(0, limit);
    const nids = await nidsByEventIds(
      deps.storage.db,
      page.map((t) => t.rootId),
    );
    const roots = (await deps.reader.listByNids(page.flatMap((t) => nids.get(t.rootId) ?? []))).filter(
      (ev) => ev.roomId === roomId,
    );
    const visible = await filterVisible(visDeps(deps), r.userId, roots);
    const chunk = await bundleAggregations(deps, await formatEvents(deps, visible, r), r);
    const last = page[page.length - 1];
    return {
      chunk,
      ...(rows.length > limit && last ? { next_batch: formatStreamToken(last.latestPos - 1) } : {}),
    };
  });
}
