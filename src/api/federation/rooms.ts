/**
 * Joining and leaving through this server (server-server API "Joining Rooms", "Leaving Rooms"): make_join and
 * make_leave answer an event template over the current state; send_join and send_leave (v2) check the signed event
 * and persist it through the room writer like any remote event. send_join answers the state before the join and its
 * auth chain (members are never omitted).
 */
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import type { KeyRing } from '../../federation/keyring.js';
import { checkReceivedPdu } from '../../federation/pdu-checks.js';
import {
  authChain,
  membershipTemplate,
  requireAclAllows,
  roomEvent,
  serversInRoom,
  stateBefore,
} from '../../federation/room-access.js';
import { MissingEventsError } from '../../input/remote-events.js';
import type { RoomHead } from '../../input/room-head.js';
import type { RoomWriter } from '../../input/room-writer.js';
import { lookupIn } from '../../input/room-head.js';
import { checkEventAuth } from '../../rooms/auth/check.js';
import { forRules } from '../../input/state-at.js';
import type { JsonObject, Pdu } from '../../rooms/event.js';
import { serverNameOf } from '../../rooms/identifiers.js';
import type { Storage } from '../../storage/db.js';
import { markSendOnBehalf } from '../../storage/federation-queue.js';
import { isJsonObject, parseBody, parseParams, parseQuery } from '../../util/validate.js';
import type { SigningKey } from '../../keys/signing-key.js';
import { findRoomVersion } from '../../rooms/room-versions.js';
import { signEvent } from '../../rooms/signing.js';
import { MatrixError } from '../errors.js';

export interface RoomRoutesDeps {
  serverName: string;
  storage: Storage;
  writer: RoomWriter;
  keyRing: Pick<KeyRing, 'getVerifyKey'>;
  signingKey: SigningKey;
  authenticate: preHandlerAsyncHookHandler;
}

const InviteBody = z.looseObject({
  room_version: z.string(),
  event: z.looseObject({}),
  invite_room_state: z.array(z.unknown()).optional(),
});

const MakeParams = z.object({ roomId: z.string(), userId: z.string() });
const SendParams = z.object({ roomId: z.string(), eventId: z.string() });
const VerQuery = z.looseObject({ ver: z.union([z.string(), z.array(z.string())]).optional() });

async function headOf(deps: RoomRoutesDeps, roomId: string): Promise<RoomHead> {
  const head = await deps.writer.head(roomId);
  if (!head) throw new MatrixError('M_NOT_FOUND', `Unknown room ${roomId}`);
  return head;
}

export function federationRoomRoutes(app: FastifyInstance, deps: RoomRoutesDeps): void {
  const guard = { preHandler: deps.authenticate };

  const make = (membership: 'join' | 'leave') => async (origin: string, params: unknown, query: unknown) => {
    const { roomId, userId } = parseParams(MakeParams, params);
    if (serverNameOf(userId) !== origin)
      throw new MatrixError('M_FORBIDDEN', `${origin} cannot ${membership} for ${userId}`);
    const head = await headOf(deps, roomId);
    requireAclAllows(head, origin);
    if (membership === 'join') {
      const ver = parseQuery(VerQuery, query).ver;
      const supported = ver === undefined ? ['1'] : Array.isArray(ver) ? ver : [ver];
      if (!supported.includes(head.version.id))
        throw new MatrixError(
          'M_INCOMPATIBLE_ROOM_VERSION',
          `Room version ${head.version.id} is not supported by ${origin}`,
          { room_version: head.version.id },
        );
    }
    const event = membershipTemplate(head, userId, { membership });
    const allowed = checkEventAuth(
      forRules(event as unknown as Pdu, head.version),
      lookupIn(head.state),
      head.version,
      { eventIdOf: (p) => [...head.state.values()].find((e) => e.pdu === p)?.eventId ?? '' },
    );
    if (!allowed.allowed) throw new MatrixError('M_FORBIDDEN', allowed.reason);
    return { room_version: head.version.id, event };
  };

  const send = async (membership: 'join' | 'leave', origin: string, params: unknown, body: unknown) => {
    const { roomId, eventId } = parseParams(SendParams, params);
    const head = await headOf(deps, roomId);
    requireAclAllows(head, origin);
    if (!isJsonObject(body)) throw new MatrixError('M_BAD_JSON', 'The body must be the signed event');
    const checked = await checkReceivedPdu(deps.keyRing, body, head.version);
    if (!checked.ok) throw new MatrixError('M_BAD_JSON', checked.reason);
    if (checked.redacted) throw new MatrixError('M_BAD_JSON', 'The content hash does not match');
    if (checked.eventId !== eventId)
      throw new MatrixError('M_BAD_JSON', `The event id is ${checked.eventId}, not ${eventId}`);
    const pdu = forRules(checked.raw, head.version);
    if (
      pdu.room_id !== roomId ||
      pdu.type !== 'm.room.member' ||
      pdu.state_key !== pdu.sender ||
      pdu.content.membership !== membership ||
      serverNameOf(pdu.sender) !== origin
    )
      throw new MatrixError('M_BAD_JSON', `Not a ${membership} of a user of ${origin} in ${roomId}`);
    // The joining (leaving) server sends it to nobody else: this server relays it to the room's other servers.
    await markSendOnBehalf(deps.storage.db, eventId, origin);
    let outcome;
    try {
      outcome = await deps.writer.ingestRemote(roomId, { eventId, raw: checked.raw });
    } catch (err) {
      if (err instanceof MissingEventsError) throw new MatrixError('M_BAD_JSON', err.message);
      throw err;
    }
    if (outcome.status !== 'accepted' && !(outcome.status === 'duplicate' && outcome.reason === undefined))
      throw new MatrixError('M_FORBIDDEN', outcome.reason ?? `The ${membership} was not accepted`);
    return checked.raw;
  };

  /** GET /_matrix/federation/v1/make_join/{roomId}/{userId} */
  app.get('/_matrix/federation/v1/make_join/:roomId/:userId', guard, (req) =>
    make('join')(req.federationOrigin, req.params, req.query),
  );

  /** GET /_matrix/federation/v1/make_leave/{roomId}/{userId} */
  app.get('/_matrix/federation/v1/make_leave/:roomId/:userId', guard, (req) =>
    make('leave')(req.federationOrigin, req.params, req.query),
  );

  /** PUT /_matrix/federation/v2/send_join/{roomId}/{eventId} */
  app.put('/_matrix/federation/v2/send_join/:roomId/:eventId', guard, async (req) => {
    const raw = await send('join', req.federationOrigin, req.params, req.body);
    const { roomId, eventId } = parseParams(SendParams, req.params);
    const head = await headOf(deps, roomId);
    const joined = await roomEvent(deps.storage, head, eventId);
    const state = await stateBefore(deps.storage, head, joined);
    const chain = await authChain(deps.storage, head, [...state.map((s) => s.pdu), joined.pdu]);
    return {
      event: raw as unknown as JsonObject,
      state: state.map((s) => s.raw),
      auth_chain: chain.map((s) => s.raw),
      members_omitted: false,
      servers_in_room: [...serversInRoom(head)],
      origin: deps.serverName,
    };
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

  /** PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId} */
  app.put('/_matrix/federation/v2/send_leave/:roomId/:eventId', guard, async (req) => {
    await send('leave', req.federationOrigin, req.params, req.body);
    return {};
  });
}
