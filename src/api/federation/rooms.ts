/**
 * Joining and leaving through this server (server-server API "Joining Rooms", "Restricted rooms", "Leaving Rooms")
 * and invites of local users. make_join and make_leave answer an event template (a restricted join's names a local
 * user who may invite as `join_authorised_via_users_server`); send_join and send_leave (v2, and the v1 forms
 * answering `[200, {...}]` for older servers) check the signed event and persist it through the room writer.
 * send_join answers the state before the join and its auth chain (members are never omitted).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { checkReceivedPdu } from '../../federation/pdu-checks.js';
import {
  authChain,
  requireAclAllows,
  roomEvent,
  serversInRoom,
  stateBefore,
} from '../../federation/room-access.js';
import type { RoomHead } from '../../input/room-head.js';
import { forRules } from '../../input/state-at.js';
import type { JsonObject } from '../../rooms/event.js';
import { serverNameOf } from '../../rooms/identifiers.js';
import { findRoomVersion } from '../../rooms/room-versions.js';
import { signEvent } from '../../rooms/signing.js';
import { authoriseRestrictedJoin, needsAuthoriser } from '../../roomsvc/restricted-join.js';
import { isJsonObject, parseBody, parseParams } from '../../util/validate.js';
import { MatrixError } from '../errors.js';
import {
  headOf,
  makeMembership,
  requireVersionSupported,
  SendParams,
  sendMembership,
  type RoomRoutesDeps,
} from './membership-handshake.js';

export type { RoomRoutesDeps } from './membership-handshake.js';

const InviteBody = z.looseObject({
  room_version: z.string(),
  event: z.looseObject({}),
  invite_room_state: z.array(z.unknown()).optional(),
});

export function federationRoomRoutes(app: FastifyInstance, deps: RoomRoutesDeps): void {
  const guard = { preHandler: deps.authenticate };

  /** A restricted join needs a local user who may invite; the template names them. */
  const restricted = async (head: RoomHead, userId: string): Promise<JsonObject> => {
    if (!needsAuthoriser(head, userId)) return {};
    const outcome = await authoriseRestrictedJoin(deps, head, userId);
    if (!outcome.ok) throw new MatrixError(outcome.errcode, outcome.reason);
    return { join_authorised_via_users_server: outcome.authoriser };
  };

  /**
   * A join naming one of our users in `join_authorised_via_users_server` needs our signature: when the join rule
   * still requires an authoriser, the allow conditions and that user's power are checked again first (the
   * authorization rules check the rest).
   */
  const countersign = async (head: RoomHead, event: JsonObject): Promise<JsonObject> => {
    const via = (event.content as JsonObject).join_authorised_via_users_server;
    if (!head.version.restrictedJoins || typeof via !== 'string' || serverNameOf(via) !== deps.serverName)
      return event;
    if (needsAuthoriser(head, String(event.sender))) {
      const outcome = await authoriseRestrictedJoin(deps, head, String(event.sender), via);
      if (!outcome.ok) throw new MatrixError(outcome.errcode, outcome.reason);
    }
    return signEvent(event, head.version, deps.serverName, deps.signingKey.keyId, deps.signingKey.seed);
  };

  const joinAnswer = async (params: unknown, raw: JsonObject) => {
    const { roomId, eventId } = parseParams(SendParams, params);
    const head = await headOf(deps, roomId);
    const joined = await roomEvent(deps.storage, head, eventId);
    const state = await stateBefore(deps.storage, head, joined);
    const chain = await authChain(deps.storage, head, [...state.map((s) => s.pdu), joined.pdu]);
    return {
      event: raw,
      state: state.map((s) => s.raw),
      auth_chain: chain.map((s) => s.raw),
      members_omitted: false,
      servers_in_room: [...serversInRoom(head)],
      origin: deps.serverName,
    };
  };

  /** GET /_matrix/federation/v1/make_join/{roomId}/{userId} */
  app.get('/_matrix/federation/v1/make_join/:roomId/:userId', guard, (req) =>
    makeMembership(deps, 'join', req.federationOrigin, req.params, (head, userId) => {
      requireVersionSupported(head, req.federationOrigin, req.query);
      return restricted(head, userId);
    }),
  );

  /** GET /_matrix/federation/v1/make_leave/{roomId}/{userId} */
  app.get('/_matrix/federation/v1/make_leave/:roomId/:userId', guard, (req) =>
    makeMembership(deps, 'leave', req.federationOrigin, req.params),
  );

  /** PUT /_matrix/federation/v2/send_join/{roomId}/{eventId} */
  app.put('/_matrix/federation/v2/send_join/:roomId/:eventId', guard, async (req) => {
    const raw = await sendMembership(deps, 'join', req.federationOrigin, req.params, req.body, countersign);
    return joinAnswer(req.params, raw as unknown as JsonObject);
  });

  /**
   * PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}: removed from the spec in v1.18 (MSC4376), still sent
   * by older servers; the v2 answer in the old `[200, {...}]` shape.
   */
  app.put('/_matrix/federation/v1/send_join/:roomId/:eventId', guard, async (req) => {
    const raw = await sendMembership(deps, 'join', req.federationOrigin, req.params, req.body, countersign);
    const answer = await joinAnswer(req.params, raw as unknown as JsonObject);
    return [
      200,
      { origin: answer.origin, state: answer.state, auth_chain: answer.auth_chain, event: answer.event },
    ];
  });

  /** PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId} */
  app.put('/_matrix/federation/v2/send_leave/:roomId/:eventId', guard, async (req) => {
    await sendMembership(deps, 'leave', req.federationOrigin, req.params, req.body);
    return {};
  });

  /** PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}: removed in v1.18 like v1 send_join; `[200, {}]`. */
  app.put('/_matrix/federation/v1/send_leave/:roomId/:eventId', guard, async (req) => {
    await sendMembership(deps, 'leave', req.federationOrigin, req.params, req.body);
    return [200, {}];
  });

  /**
   * PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: another server invites a local user. The event is checked,
   * countersigned and returned; when this server is not in the room it is kept as an outlier with the invite state,
   * and the user's invite membership makes /sync show it.
   */
  app.put('/_matrix/federation/v2/invite/:roomId/:eventId', guard, async (req) => {
    const origin = req.federationOrigin;
    const { roomId, eventId } = parseParams(SendParams, req.params);
    const body = parseBody(InviteBody, req.body);
    const version = findRoomVersion(body.room_version);
    if (!version)
      throw new MatrixError(
        'M_INCOMPATIBLE_ROOM_VERSION',
        `Room version ${body.room_version} is not supported`,
        {
          room_version: body.room_version,
        },
      );
    const checked = await checkReceivedPdu(deps.keyRing, body.event, version);
    if (!checked.ok) throw new MatrixError('M_BAD_JSON', checked.reason);
    if (checked.redacted) throw new MatrixError('M_BAD_JSON', 'The content hash does not match');
    if (checked.eventId !== eventId)
      throw new MatrixError('M_BAD_JSON', `The event id is ${checked.eventId}, not ${eventId}`);
    const pdu = forRules(checked.raw, version);
    const target = pdu.state_key ?? '';
    if (
      pdu.room_id !== roomId ||
      pdu.type !== 'm.room.member' ||
      pdu.content.membership !== 'invite' ||
      serverNameOf(pdu.sender) !== origin ||
      serverNameOf(target) !== deps.serverName
    )
      throw new MatrixError('M_BAD_JSON', `Not an invite of a user of this server by a user of ${origin}`);
    const head = await deps.writer.head(roomId);
    if (head) requireAclAllows(head, origin);
    const { keyId, seed } = deps.signingKey;
    const signed = signEvent(checked.raw, version, deps.serverName, keyId, seed);
    const inServer = head && serversInRoom(head).has(deps.serverName);
    if (!inServer) {
      const stripped = (body.invite_room_state ?? []).filter(isJsonObject);
      await deps.writer.storeInvite(roomId, version, eventId, {
        ...signed,
        unsigned: { invite_room_state: stripped },
      });
    }
    return { event: signed };
  });
}
