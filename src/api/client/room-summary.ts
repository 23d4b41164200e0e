/**
 * GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (v1.15, MSC3266), as Synapse's RoomSummaryHandler answers it.
 * A room whose state this server holds is summarised from it; otherwise the `via` servers (and, for an alias, the
 * servers the directory named) are asked with the federation hierarchy request. The summary is shown when the
 * requester is joined, invited or knocking, when the join rule is public, knock or knock_restricted, when the
 * history is world_readable, or (restricted rooms) when the requester is joined to one of the allowed rooms; without
 * a token only the join rule and history visibility count (the spec's MAY). Anything else is 404 M_NOT_FOUND, the
 * same answer as an unknown room. A token that is present must be valid; guests may call it.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { RemoteHierarchy } from '../../federation/remote-hierarchy.js';
import type { RemoteRoomSummary } from '../../federation/remote-directory.js';
import { lookupIn, type RoomHead } from '../../input/room-head.js';
import { joinRuleOf, membershipOf } from '../../rooms/auth/power-levels.js';
import { isValidRoomId, isValidServerName } from '../../rooms/identifiers.js';
import { resolveAlias } from '../../roomsvc/directory.js';
import { allowedRoomIds, fullSummary } from '../../roomsvc/room-summary.js';
import { membershipWithEvent } from '../../storage/memberships.js';
import { bearerToken } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { invalidParam, MatrixError } from '../errors.js';
import { parseQuery } from '../validate.js';

const SummaryQuery = z.looseObject({
  via: z.union([z.string(), z.array(z.string())]).optional(),
});

/** Join rules that let anyone see the summary (the spec's list for unauthenticated access). */
const OPEN_JOIN_RULES = new Set(['public', 'knock', 'knock_restricted']);
/** Memberships that let the user see the summary of a room otherwise closed to them. */
const SEEING_MEMBERSHIPS = new Set(['join', 'invite', 'knock']);

const notFound = (): MatrixError => new MatrixError('M_NOT_FOUND', 'Room not found or not accessible');

type Summary = RemoteRoomSummary & { membership?: string };

export function roomSummaryRoutes(
  app: FastifyInstance,
  deps: Pick<
    ApiDeps,
    'config' | 'storage' | 'writer' | 'auth' | 'federation' | 'remoteQueries' | 'appServiceQueries'
  >,
): void {
  const { storage, writer, auth, config } = deps;
  const serverName = config.server_name;
  const client = deps.federation?.client;
  const remote = client && new RemoteHierarchy(client, serverName);
  const directory = {
    storage,
    writer,
    serverName,
    remoteAlias:
      deps.remoteQueries && ((server: string, alias: string) => deps.remoteQueries!.directory(server, alias)),
    queryAlias: deps.appServiceQueries?.queryAlias,
  };

  /** The room's state as this server holds it (undefined when it holds no create event, e.g. only an invite). */
  const localHead = async (roomId: string): Promise<RoomHead | undefined> => {
    const head = await writer.head(roomId);
    return head && lookupIn(head.state)('m.room.create', '') ? head : undefined;
  };

  /** Whether `userId` is joined to one of `rooms` (restricted join rules). */
  const joinedToAny = async (userId: string, rooms: readonly string[]): Promise<boolean> => {
    for (const roomId of rooms) {
      const head = await writer.head(roomId);
      if (head && membershipOf(userId, lookupIn(head.state)) === 'join') return true;
    }
    return false;
  };

  const openToAll = (s: RemoteRoomSummary): boolean =>
    OPEN_JOIN_RULES.has(s.join_rule ?? '') || s.world_readable;

  async function summarize(roomId: string, via: string[], userId: string | undefined): Promise<Summary> {
    const head = await localHead(roomId);
    if (head) {
      const summary = fullSummary(head);
      if (userId === undefined) {
        if (!openToAll(summary)) throw notFound();
        return summary;
      }
      const membership = membershipOf(userId, lookupIn(head.state)) ?? 'leave';
      const rule = joinRuleOf(lookupIn(head.state));
      const seen =
        SEEING_MEMBERSHIPS.has(membership) ||
        openToAll(summary) ||
        (rule === 'restricted' && (await joinedToAny(userId, allowedRoomIds(head))));
      if (!seen) throw notFound();
      return { ...summary, membership };
    }
    const space = remote && via.length > 0 ? await remote.fetch(roomId, via, false) : undefined;
    if (!space) throw notFound();
    const summary: RemoteRoomSummary = { ...space.room };
    if (userId === undefined) {
      if (!openToAll(summary)) throw notFound();
      return summary;
    }
    const membership = (await membershipWithEvent(storage.db, roomId, userId))?.membership ?? 'leave';
    const seen =
      SEEING_MEMBERSHIPS.has(membership) ||
      openToAll(summary) ||
      (summary.join_rule === 'restricted' && (await joinedToAny(userId, summary.allowed_room_ids ?? [])));
    if (!seen) throw notFound();
    return { ...summary, membership };
  }

  /** GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (also at MSC3266's unstable path, which clients still use). */
  const handler = async (req: FastifyRequest<{ Params: { roomIdOrAlias: string } }>): Promise<Summary> => {
    const q = parseQuery(SummaryQuery, req.query);
    const via = (q.via === undefined ? [] : Array.isArray(q.via) ? q.via : [q.via]).filter(
      (s) => s !== serverName,
    );
    for (const server of via)
      if (!isValidServerName(server)) throw invalidParam(`Invalid server name: ${server}`);
    const userId =
      bearerToken(req) === undefined ? undefined : (req.requester = await auth.authenticate(req)).userId;
    const target = req.params.roomIdOrAlias;
    let roomId = target;
    if (target.startsWith('#')) {
      const resolved = await resolveAlias(directory, target);
      roomId = resolved.room_id;
      for (const s of resolved.servers) if (s !== serverName && !via.includes(s)) via.push(s);
    } else if (!isValidRoomId(target)) {
      throw invalidParam(`Invalid room ID or alias: ${target}`);
    }
    return summarize(roomId, via, userId);
  };
  app.get('/_matrix/client/v1/room_summary/:roomIdOrAlias', handler);
  app.get('/_matrix/client/unstable/im.nheko.summary/summary/:roomIdOrAlias', handler);
}
