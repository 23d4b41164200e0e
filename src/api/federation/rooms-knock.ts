/**
 * Knocking through this server (server-server API "Knocking upon a room", room versions 7+): make_knock answers a
 * knock template when the room's join rule is `knock` (or `knock_restricted`, v10+) and the authorization rules
 * allow the knock (a banned user is refused); send_knock persists the signed knock and answers `knock_room_state`,
 * the room's stripped state events as full PDUs (the create event always among them).
 */
import type { FastifyInstance } from 'fastify';
import { lookupIn, type RoomHead } from '../../input/room-head.js';
import { joinRuleOf } from '../../rooms/auth/power-levels.js';
import type { JsonObject } from '../../rooms/event.js';
import { stateKey } from '../../storage/state.js';
import { parseParams } from '../../util/validate.js';
import { MatrixError } from '../errors.js';
import {
  headOf,
  makeMembership,
  requireVersionSupported,
  SendParams,
  sendMembership,
  type RoomRoutesDeps,
} from './membership-handshake.js';

/** The state a knocking user is shown (client-server API "Stripped state"). */
const KNOCK_STATE_TYPES = [
  'm.room.create',
  'm.room.join_rules',
  'm.room.name',
  'm.room.avatar',
  'm.room.topic',
  'm.room.canonical_alias',
  'm.room.encryption',
];

function requireKnockable(head: RoomHead): void {
  if (!head.version.knocking)
    throw new MatrixError('M_FORBIDDEN', `Room version ${head.version.id} does not support knocking`);
  const rule = joinRuleOf(lookupIn(head.state));
  const knockable = rule === 'knock' || (rule === 'knock_restricted' && head.version.knockRestricted);
  if (!knockable) throw new MatrixError('M_FORBIDDEN', 'You are not permitted to knock on this room');
}

export function federationKnockRoutes(app: FastifyInstance, deps: RoomRoutesDeps): void {
  const guard = { preHandler: deps.authenticate };

  /** GET /_matrix/federation/v1/make_knock/{roomId}/{userId} */
  app.get('/_matrix/federation/v1/make_knock/:roomId/:userId', guard, (req) =>
    makeMembership(deps, 'knock', req.federationOrigin, req.params, (head) => {
      requireVersionSupported(head, req.federationOrigin, req.query);
      requireKnockable(head);
      return {};
    }),
  );

  /** PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId} */
  app.put('/_matrix/federation/v1/send_knock/:roomId/:eventId', guard, async (req) => {
    await sendMembership(deps, 'knock', req.federationOrigin, req.params, req.body, (head, event) => {
      requireKnockable(head);
      return event;
    });
    const { roomId } = parseParams(SendParams, req.params);
    const head = await headOf(deps, roomId);
    // The head's state entries hold each event as stored (its wire form, signatures included).
    const knockRoomState: JsonObject[] = [];
    for (const type of KNOCK_STATE_TYPES) {
      const e = head.state.get(stateKey(type, ''));
      if (e) knockRoomState.push(e.pdu as unknown as JsonObject);
    }
    // `knock_state_events` is the name servers before spec v1.12 read (Synapse 1.67 fails the knock without it).
    return { knock_room_state: knockRoomState, knock_state_events: knockRoomState };
  });
}
