/**
 * Room discovery for other servers (server-server API "Public Room Directory", "Spaces" and "Timestamp to event"):
 * GET and POST /publicRooms list this server's published rooms as the client API does, /hierarchy describes a space
 * and its children for the requesting server, /timestamp_to_event finds the event nearest a time in a room that
 * server may read.
 */
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import { requireMayRead } from '../../federation/room-access.js';
import type { RoomWriter } from '../../input/room-writer.js';
import { eventsByNid } from '../../input/state-at.js';
import { eventsNearTs } from '../../read/room-queries.js';
import { federationHierarchy } from '../../roomsvc/federation-hierarchy.js';
import {
  listPublicRooms,
  type PublicRoomsQuery,
  type PublicRoomsResponse,
} from '../../roomsvc/public-rooms.js';
import type { Storage } from '../../storage/db.js';
import { PublicRoomsBody } from '../client/directory.js';
import { notFound } from '../errors.js';
import { parseBody, parseParams, parseQuery } from '../validate.js';

const FederationPublicRoomsBody = z.preprocess((body) => {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  const all = (body as { include_all_networks?: unknown }).include_all_networks;
  return all === 'true' || all === 'false' ? { ...body, include_all_networks: all === 'true' } : body;
}, PublicRoomsBody);

export interface DirectoryRoutesDeps {
  serverName: string;
  storage: Storage;
  writer: RoomWriter;
  authenticate: preHandlerAsyncHookHandler;
}

const Room = z.object({ roomId: z.string() });
const Bool = z.enum(['true', 'false']);
const PublicRoomsGet = z.looseObject({
  limit: z.coerce.number().int().min(0).optional(),
  since: z.string().optional(),
  include_all_networks: Bool.optional(),
  third_party_instance_id: z.string().optional(),
});
const HierarchyQuery = z.looseObject({ suggested_only: Bool.default('false') });
const TimestampQuery = z.looseObject({ ts: z.coerce.number().int().min(0), dir: z.enum(['f', 'b']) });

/** Candidates read for the nearest accepted event. */
const CANDIDATES = 20;

export function federationDirectoryRoutes(app: FastifyInstance, deps: DirectoryRoutesDeps): void {
  const guard = { preHandler: deps.authenticate };
  /**
   * Every room of this server is in the Matrix network: a third-party network (without include_all_networks)
   * lists nothing.
   */
  const list = async (
    q: PublicRoomsQuery,
    network: { all: boolean; instance: string | undefined },
  ): Promise<PublicRoomsResponse> =>
    network.instance !== undefined && !network.all
      ? { chunk: [], total_room_count_estimate: 0 }
      : listPublicRooms(deps, q);

  /** GET /_matrix/federation/v1/publicRooms */
  app.get('/_matrix/federation/v1/publicRooms', guard, async (req) => {
    const q = parseQuery(PublicRoomsGet, req.query);
    return list(
      { limit: q.limit, since: q.since },
      { all: q.include_all_networks === 'true', instance: q.third_party_instance_id },
    );
  });

  /**
   * POST /_matrix/federation/v1/publicRooms. Synapse (at least to 1.67) sends include_all_networks as the string
   * "true"/"false" here as in the GET query; both forms are accepted.
   */
  app.post('/_matrix/federation/v1/publicRooms', guard, async (req) => {
    const body = parseBody(FederationPublicRoomsBody, req.body);
    return list(
      {
        limit: body.limit,
        since: body.since,
        searchTerm: body.filter?.generic_search_term,
        roomTypes: body.filter?.room_types,
      },
      { all: body.include_all_networks === true, instance: body.third_party_instance_id },
    );
  });

  /** GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only= */
  app.get('/_matrix/federation/v1/hierarchy/:roomId', guard, async (req) => {
    const { roomId } = parseParams(Room, req.params);
    const q = parseQuery(HierarchyQuery, req.query);
    return federationHierarchy(deps, roomId, req.federationOrigin, q.suggested_only === 'true');
  });

  /** GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir= */
  app.get('/_matrix/federation/v1/timestamp_to_event/:roomId', guard, async (req) => {
    const { roomId } = parseParams(Room, req.params);
    const { ts, dir } = parseQuery(TimestampQuery, req.query);
    const head = await deps.writer.head(roomId);
    if (!head) throw notFound(`Unknown room ${roomId}`);
    requireMayRead(head, req.federationOrigin);
    const positions = await eventsNearTs(deps.storage.db, head.roomNid, ts, dir, CANDIDATES);
    const events = await eventsByNid(
      deps.storage.db,
      positions.map((p) => p.nid),
      head.version,
    );
    for (const p of positions) {
      const ev = events.get(p.nid);
      if (ev && ev.row.rejected_reason === null)
        return { event_id: ev.eventId, origin_server_ts: ev.pdu.origin_server_ts };
    }
    throw notFound(`Unable to find event from ${ts} in ${dir === 'f' ? 'forward' : 'backward'} direction`);
  });
}
