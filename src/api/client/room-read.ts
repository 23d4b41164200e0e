/** Reading a room's events: /messages, /context and /event (client-server API "Getting events for a room"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { LoadedEvent } from '../../read/event-reader.js';
import {
  formatEvents,
  matchesFilter,
  memberEventsFor,
  paginateRoom,
  parseEventFilter,
  readHead,
  roomAccess,
  stateAfterLoaded,
  visDeps,
  type ReadDeps,
  type RoomAccess,
} from '../../read/room-pagination.js';
import { formatStreamToken, parseStreamToken, TIMELINE_START } from '../../read/tokens.js';
import { paginateBackfilling } from '../../read/backfill-page.js';
import { Backfiller } from '../../federation/backfill.js';
import { filterVisible } from '../../read/visibility.js';
import type { RoomEventFilter } from '../../sync/filter.js';
import { isValidEventId } from '../../rooms/identifiers.js';
import { requester, type Requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden, invalidParam, MatrixError, notFound } from '../errors.js';
import { limitParam, parseParams, parseQuery } from '../validate.js';
import { bundleAggregations } from '../../read/aggregations.js';
import { ignoresSender, withoutIgnored } from '../../sync/ignored.js';

const RoomParams = z.object({ roomId: z.string() });
const EventParams = z.object({ roomId: z.string(), eventId: z.string() });
const MessagesQuery = z.object({
  dir: z.enum(['b', 'f']).default('b'),
  from: z.string().optional(),
  to: z.string().optional(),
  limit: limitParam(10, 1000),
  filter: z.string().optional(),
});
const ContextQuery = z.object({ limit: limitParam(10, 100), filter: z.string().optional() });

/** The event, when it is in the room, in the timeline and visible to the user; else undefined. */
async function visibleEvent(
  deps: ReadDeps,
  access: RoomAccess,
  eventId: string,
): Promise<LoadedEvent | undefined> {
  const ev = await deps.reader.byId(eventId);
  if (!ev || ev.roomId !== access.room.roomId || ev.streamOrdering === null) return undefined;
  if (access.cap !== undefined && ev.streamOrdering > access.cap) return undefined;
  const [visible] = await filterVisible(visDeps(deps), access.userId, [ev]);
  return visible;
}

/** Formats events with bundled aggregations for this requester. */
async function serve(deps: ReadDeps, events: readonly LoadedEvent[], r: Requester) {
  return bundleAggregations(deps, await formatEvents(deps, events, r), r);
}

/** The lazy-loaded member state for `events`' senders, from the state after `at` (the newest of them). */
async function lazyMembers(deps: ReadDeps, at: LoadedEvent, events: readonly LoadedEvent[]) {
  const state = await stateAfterLoaded(deps, at);
  return state
    ? memberEventsFor(
        state,
        events.map((e) => e.pdu.sender),
      )
    : [];
}

/** State at `ev` for /context, filtered; with lazy loading, members only for `senders`. */
async function contextState(
  deps: ReadDeps,
  ev: LoadedEvent,
  senders: readonly LoadedEvent[],
  filter: RoomEventFilter | undefined,
): Promise<LoadedEvent[]> {
  const state = await stateAfterLoaded(deps, ev);
  if (!state) return [];
  const matching = [...state.values()].filter((e) => matchesFilter(e, filter));
  if (!filter?.lazy_load_members) return matching;
  const nonMembers = matching.filter((e) => e.pdu.type !== 'm.room.member');
  return [
    ...nonMembers,
    ...memberEventsFor(
      state,
      senders.map((e) => e.pdu.sender),
    ),
  ];
}

/** Event ids are opaque to clients: only an empty one is malformed; any other unknown one is not found. */
function checkEventId(eventId: string): void {
  if (eventId === '') throw invalidParam('Missing event id');
  if (!isValidEventId(eventId)) throw notFound('Event not found');
}

export function roomReadRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };
  const fed = deps.federation;
  const backfiller = fed
    ? new Backfiller({
        storage: deps.storage,
        writer: deps.writer,
        serverName: deps.config.server_name,
        keyRing: fed.keyRing,
        client: fed.client,
        log: app.log,
      })
    : undefined;
  const backfill = backfiller && ((roomId: string, limit: number) => backfiller.backfill(roomId, limit));

  /** GET /_matrix/client/v3/rooms/{roomId}/messages */
  app.get('/_matrix/client/v3/rooms/:roomId/messages', guard, async (req) => {
    const r = requester(req);
    const { roomId } = parseParams(RoomParams, req.params);
    const q = parseQuery(MessagesQuery, req.query);
    const filter = parseEventFilter(q.filter);
    const from = q.from === undefined ? undefined : parseStreamToken(q.from, 'from').pos;
    const to = q.to === undefined ? undefined : parseStreamToken(q.to, 'to').pos;
    const access = await roomAccess(deps, roomId, r.userId);
    const start = from ?? (q.dir === 'b' ? readHead(deps, access) : TIMELINE_START);
    const wanted = { dir: q.dir, from: start, to, limit: q.limit, filter };
    const page = await paginateBackfilling(deps, access, wanted, backfill);
    // Ignored users' events leave a shorter chunk (as Synapse does); the tokens still step over them.
    page.events = await withoutIgnored(deps.storage.db, r.userId, page.events);
    const newest = q.dir === 'b' ? page.events[0] : page.events[page.events.length - 1];
    const state = filter?.lazy_load_members && newest ? await lazyMembers(deps, newest, page.events) : [];
    return {
      chunk: await serve(deps, page.events, r),
      start: q.from ?? formatStreamToken(start),
      ...(page.next !== undefined ? { end: formatStreamToken(page.next) } : {}),
      ...(state.length ? { state: await formatEvents(deps, state, r) } : {}),
    };
  });

  /** GET /_matrix/client/v3/rooms/{roomId}/context/{eventId} */
  app.get('/_matrix/client/v3/rooms/:roomId/context/:eventId', guard, async (req) => {
    const r = requester(req);
    const { roomId, eventId } = parseParams(EventParams, req.params);
    const q = parseQuery(ContextQuery, req.query);
    const filter = parseEventFilter(q.filter);
    checkEventId(eventId);
    const access = await roomAccess(deps, roomId, r.userId);
    const known = await deps.reader.byId(eventId);
    if (!known || known.roomId !== roomId || known.streamOrdering === null) throw notFound('Event not found');
    const ev = await visibleEvent(deps, access, eventId);
    // An event of an ignored user is refused like one the user may not see (Synapse).
    if (!ev || (await ignoresSender(deps.storage.db, r.userId, ev)))
      throw forbidden("You don't have permission to access that event");
    const pos = ev.streamOrdering as number;
    const nBefore = Math.floor(q.limit / 2);
    const [before, after] = await Promise.all([
      paginateRoom(deps, access, { dir: 'b', from: pos - 1, limit: nBefore, filter }),
      paginateRoom(deps, access, { dir: 'f', from: pos, limit: q.limit - nBefore, filter }),
    ]);
    const lastBefore = before.events[before.events.length - 1];
    const lastAfter = after.events[after.events.length - 1];
    const [shownBefore, shownAfter] = await Promise.all([
      withoutIgnored(deps.storage.db, r.userId, before.events),
      withoutIgnored(deps.storage.db, r.userId, after.events),
    ]);
    const state = await contextState(deps, ev, [...before.events, ev, ...after.events], filter);
    return {
      event: (await serve(deps, [ev], r))[0],
      events_before: await serve(deps, shownBefore, r),
      events_after: await serve(deps, shownAfter, r),
      start: formatStreamToken(lastBefore ? (lastBefore.streamOrdering as number) - 1 : pos - 1),
      end: formatStreamToken(lastAfter ? (lastAfter.streamOrdering as number) : pos),
      state: await formatEvents(deps, state, r),
    };
  });

  /** GET /_matrix/client/v3/rooms/{roomId}/event/{eventId} */
  app.get('/_matrix/client/v3/rooms/:roomId/event/:eventId', guard, async (req) => {
    const r = requester(req);
    const { roomId, eventId } = parseParams(EventParams, req.params);
    checkEventId(eventId);
    let access: RoomAccess;
    try {
      access = await roomAccess(deps, roomId, r.userId);
    } catch (err) {
      // Like Synapse, an event the user may not see is "not found", whatever the reason.
      if (err instanceof MatrixError && err.errcode === 'M_FORBIDDEN') throw notFound('Event not found');
      throw err;
    }
    const ev = await visibleEvent(deps, access, eventId);
    if (!ev || (await ignoresSender(deps.storage.db, r.userId, ev))) throw notFound('Event not found');
    return (await serve(deps, [ev], r))[0];
  });
}
