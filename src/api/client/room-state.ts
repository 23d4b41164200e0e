/** Room state and members (client-server API "Getting events for a room": state, members, joined_members). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { LoadedEvent } from '../../read/event-reader.js';
import {
  formatEvents,
  readHead,
  roomAccess,
  stateAfter,
  visDeps,
  visibleState,
  type ReadDeps,
  type RoomAccess,
} from '../../read/room-pagination.js';
import { lastEventAtOrBefore } from '../../read/room-queries.js';
import { parseStreamToken } from '../../read/tokens.js';
import { filterVisible, membershipIn } from '../../read/visibility.js';
import { stateKey } from '../../storage/state.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden, notFound } from '../errors.js';
import { parseParams, parseQuery } from '../validate.js';

const RoomParams = z.object({ roomId: z.string() });
const StateParams = z.object({ roomId: z.string(), eventType: z.string(), stateKey: z.string().optional() });
const StateQuery = z.object({ format: z.enum(['content', 'event']).optional() });
const Membership = z.enum(['join', 'invite', 'knock', 'leave', 'ban']);
const MembersQuery = z.object({
  at: z.string().optional(),
  membership: Membership.optional(),
  not_membership: Membership.optional(),
});

/**
 * The state after the last event at or before the token position, bounded by what the user may read: a departed
 * member's reads stop at their departure, and the user must be allowed to see that event by the room's history
 * visibility (as Synapse's _user_can_see_state_at_event), else 403.
 */
async function stateAtToken(
  deps: ReadDeps,
  access: RoomAccess,
  token: string,
): Promise<Map<string, LoadedEvent>> {
  const pos = Math.min(parseStreamToken(token, 'at').pos, readHead(deps, access));
  const facts = await lastEventAtOrBefore(deps.storage.db, access.room.roomNid, pos);
  if (!facts) return new Map();
  const last = (await deps.reader.byNids([facts.nid])).get(facts.nid);
  const visible = last ? await filterVisible(visDeps(deps), access.userId, [last]) : [];
  if (visible.length === 0) {
    throw forbidden(
      `User ${access.userId} not allowed to view events in room ${access.room.roomId} at ${token}`,
    );
  }
  const state = await stateAfter(deps, {
    nid: facts.nid,
    roomId: access.room.roomId,
    eventId: facts.eventId,
    stateSnapshotNid: facts.snapshotNid,
    type: facts.type,
    stateKey: facts.stateKey,
  });
  return state ?? new Map();
}

export function roomStateRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** GET /_matrix/client/v3/rooms/{roomId}/state */
  app.get('/_matrix/client/v3/rooms/:roomId/state', guard, async (req) => {
    const r = requester(req);
    const { roomId } = parseParams(RoomParams, req.params);
    const access = await roomAccess(deps, roomId, r.userId);
    const state = await visibleState(deps, access);
    return formatEvents(deps, [...state.values()], r);
  });

  /** GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} */
  const oneState = async (req: FastifyRequest) => {
    const r = requester(req);
    const p = parseParams(StateParams, req.params);
    const { format } = parseQuery(StateQuery, req.query);
    const access = await roomAccess(deps, p.roomId, r.userId);
    const state = await visibleState(deps, access);
    const ev = state.get(stateKey(p.eventType, p.stateKey ?? ''));
    if (!ev) throw notFound(`Event not found`);
    const [client] = await formatEvents(deps, [ev], r);
    if (!client) throw notFound(`Event not found`);
    return format === 'event' ? client : client.content;
  };
  app.get('/_matrix/client/v3/rooms/:roomId/state/:eventType/:stateKey', guard, oneState);
  app.get('/_matrix/client/v3/rooms/:roomId/state/:eventType', guard, oneState);

  /** GET /_matrix/client/v3/rooms/{roomId}/members */
  app.get('/_matrix/client/v3/rooms/:roomId/members', guard, async (req) => {
    const r = requester(req);
    const { roomId } = parseParams(RoomParams, req.params);
    const q = parseQuery(MembersQuery, req.query);
    const access = await roomAccess(deps, roomId, r.userId);
    const state =
      q.at === undefined ? await visibleState(deps, access) : await stateAtToken(deps, access, q.at);
    const members = [...state.values()].filter((ev) => {
      if (ev.pdu.type !== 'm.room.member') return false;
      const m = membershipIn(ev.pdu.content);
      return (q.membership === undefined || m === q.membership) && m !== q.not_membership;
    });
    return { chunk: await formatEvents(deps, members, r) };
  });

  /** GET /_matrix/client/v3/rooms/{roomId}/joined_members */
  app.get('/_matrix/client/v3/rooms/:roomId/joined_members', guard, async (req) => {
    const r = requester(req);
    const { roomId } = parseParams(RoomParams, req.params);
    const access = await roomAccess(deps, roomId, r.userId);
    if (access.membership?.membership !== 'join' && !access.worldReadable) {
      throw forbidden(`User ${r.userId} not in room ${roomId}`);
    }
    const state = await visibleState(deps, access);
    const joined: Record<string, { display_name?: string; avatar_url?: string }> = {};
    for (const ev of state.values()) {
      const { type, state_key: userId, content } = ev.pdu;
      if (type !== 'm.room.member' || userId === undefined || membershipIn(content) !== 'join') continue;
      joined[userId] = {
        ...(typeof content.displayname === 'string' ? { display_name: content.displayname } : {}),
        ...(typeof content.avatar_url === 'string' ? { avatar_url: content.avatar_url } : {}),
      };
    }
    return { joined };
  });
}
