/**
 * Reading a room's graph over federation (server-server API "Retrieving events", "Backfilling"): an event, the state
 * before an event (full or as ids) with its auth chain, an event's auth chain, get_missing_events and backfill. Only
 * servers with a member joined to the room, or any server when its history is world_readable, may read, and
 * m.room.server_acl applies. Rejected events are never served; events from before the server could see the room
 * (history visibility) are served redacted (federation/server-visibility.ts).
 */
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import {
  authChain,
  backfillEvents,
  missingEvents,
  requireMayRead,
  roomEvent,
  stateBefore,
} from '../../federation/room-access.js';
import type { RoomHead } from '../../input/room-head.js';
import type { RoomWriter } from '../../input/room-writer.js';
import type { Storage } from '../../storage/db.js';
import { eventsForServer } from '../../federation/server-visibility.js';
import { parseBody, parseParams, parseQuery } from '../../util/validate.js';
import { MatrixError } from '../errors.js';

export interface EventRoutesDeps {
  serverName: string;
  storage: Storage;
  writer: RoomWriter;
  authenticate: preHandlerAsyncHookHandler;
}

const Room = z.object({ roomId: z.string() });
const RoomEvent = z.object({ roomId: z.string(), eventId: z.string() });
const EventOnly = z.object({ eventId: z.string() });
const AtEvent = z.looseObject({ event_id: z.string() });
const MissingBody = z.looseObject({
  earliest_events: z.array(z.string()),
  latest_events: z.array(z.string()),
  limit: z.number().int().optional(),
  min_depth: z.number().int().optional(),
});
const BackfillQuery = z.looseObject({
  v: z.union([z.string(), z.array(z.string())]),
  limit: z.coerce.number().int().min(0),
});

export function federationEventRoutes(app: FastifyInstance, deps: EventRoutesDeps): void {
  const guard = { preHandler: deps.authenticate };
  const readable = async (roomId: string, origin: string): Promise<RoomHead> => {
    const head = await deps.writer.head(roomId);
    if (!head) throw new MatrixError('M_NOT_FOUND', `Unknown room ${roomId}`);
    requireMayRead(head, origin);
    return head;
  };
  const envelope = (pdus: unknown[]) => ({
    origin: deps.serverName,
    origin_server_ts: Date.now(),
    pdus,
  });

  /** GET /_matrix/federation/v1/event/{eventId} */
  app.get('/_matrix/federation/v1/event/:eventId', guard, async (req) => {
    const { eventId } = parseParams(EventOnly, req.params);
    const row = await deps.storage.db
      .selectFrom('events as e')
      .innerJoin('rooms as r', 'r.room_nid', 'e.room_nid')
      .select('r.room_id')
      .where('e.event_id', '=', eventId)
      .executeTakeFirst();
    if (!row) throw new MatrixError('M_NOT_FOUND', `Unknown event ${eventId}`);
    const head = await readable(row.room_id, req.federationOrigin);
    const ev = await roomEvent(deps.storage, head, eventId);
    return envelope(await eventsForServer(deps.storage, head, req.federationOrigin, [ev]));
  });

  const stateAt = async (roomId: string, eventId: string, origin: string) => {
    const head = await readable(roomId, origin);
    const state = await stateBefore(deps.storage, head, await roomEvent(deps.storage, head, eventId));
    const chain = await authChain(
      deps.storage,
      head,
      state.map((s) => s.pdu),
    );
    return { state, chain };
  };

  /** GET /_matrix/federation/v1/state/{roomId}?event_id= : the state before the event. */
  app.get('/_matrix/federation/v1/state/:roomId', guard, async (req) => {
    const { roomId } = parseParams(Room, req.params);
    const { event_id } = parseQuery(AtEvent, req.query);
    const { state, chain } = await stateAt(roomId, event_id, req.federationOrigin);
    return { pdus: state.map((s) => s.raw), auth_chain: chain.map((s) => s.raw) };
  });

  /** GET /_matrix/federation/v1/state_ids/{roomId}?event_id= : the state before the event, as ids. */
  app.get('/_matrix/federation/v1/state_ids/:roomId', guard, async (req) => {
    const { roomId } = parseParams(Room, req.params);
    const { event_id } = parseQuery(AtEvent, req.query);
    const { state, chain } = await stateAt(roomId, event_id, req.federationOrigin);
    return { pdu_ids: state.map((s) => s.eventId), auth_chain_ids: chain.map((s) => s.eventId) };
  });

  /** GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} */
  app.get('/_matrix/federation/v1/event_auth/:roomId/:eventId', guard, async (req) => {
    const { roomId, eventId } = parseParams(RoomEvent, req.params);
    const head = await readable(roomId, req.federationOrigin);
    const ev = await roomEvent(deps.storage, head, eventId);
    return { auth_chain: (await authChain(deps.storage, head, [ev.pdu])).map((s) => s.raw) };
  });

  /** POST /_matrix/federation/v1/get_missing_events/{roomId} */
  app.post('/_matrix/federation/v1/get_missing_events/:roomId', guard, async (req) => {
    const { roomId } = parseParams(Room, req.params);
    const body = parseBody(MissingBody, req.body);
    const head = await readable(roomId, req.federationOrigin);
    const limit = Math.min(Math.max(body.limit ?? 10, 0), 100);
    const events = await missingEvents(
      deps.storage,
      head,
      body.earliest_events,
      body.latest_events,
      limit,
      body.min_depth ?? 0,
    );
    return { events: await eventsForServer(deps.storage, head, req.federationOrigin, events) };
  });

  /** GET /_matrix/federation/v1/backfill/{roomId}?v=&limit= */
  app.get('/_matrix/federation/v1/backfill/:roomId', guard, async (req) => {
    const { roomId } = parseParams(Room, req.params);
    const q = parseQuery(BackfillQuery, req.query);
    const head = await readable(roomId, req.federationOrigin);
    const from = Array.isArray(q.v) ? q.v : [q.v];
    const events = await backfillEvents(deps.storage, head, from, Math.min(q.limit, 100));
    return envelope(await eventsForServer(deps.storage, head, req.federationOrigin, events));
  });
}
