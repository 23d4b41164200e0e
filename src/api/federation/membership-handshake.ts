/**
 * The resident side of the membership handshakes (server-server API "Joining Rooms", "Knocking upon a room",
 * "Leaving Rooms"): make_* answers an event template over the current state when the authorization rules would
 * allow it; send_* checks the signed event and persists it through the room writer like any remote event, on the
 * sender's behalf (this server relays it to the room's other servers).
 */
import type { preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import type { KeyRing } from '../../federation/keyring.js';
import { checkReceivedPdu } from '../../federation/pdu-checks.js';
import { membershipTemplate, requireAclAllows } from '../../federation/room-access.js';
import { MissingEventsError } from '../../input/remote-events.js';
import type { RoomHead } from '../../input/room-head.js';
import { lookupIn } from '../../input/room-head.js';
import type { RoomWriter } from '../../input/room-writer.js';
import { forRules } from '../../input/state-at.js';
import type { SigningKey } from '../../keys/signing-key.js';
import { checkEventAuth } from '../../rooms/auth/check.js';
import type { JsonObject, Pdu } from '../../rooms/event.js';
import { serverNameOf } from '../../rooms/identifiers.js';
import type { Storage } from '../../storage/db.js';
import { markSendOnBehalf } from '../../storage/federation-queue.js';
import { isJsonObject, parseParams, parseQuery } from '../../util/validate.js';
import { MatrixError } from '../errors.js';

export interface RoomRoutesDeps {
  serverName: string;
  storage: Storage;
  writer: RoomWriter;
  keyRing: Pick<KeyRing, 'getVerifyKey'>;
  signingKey: SigningKey;
  authenticate: preHandlerAsyncHookHandler;
}

export type Membership = 'join' | 'leave' | 'knock';

const MakeParams = z.object({ roomId: z.string(), userId: z.string() });
export const SendParams = z.object({ roomId: z.string(), eventId: z.string() });
const VerQuery = z.looseObject({ ver: z.union([z.string(), z.array(z.string())]).optional() });

export async function headOf(deps: RoomRoutesDeps, roomId: string): Promise<RoomHead> {
  const head = await deps.writer.head(roomId);
  if (!head) throw new MatrixError('M_NOT_FOUND', `Unknown room ${roomId}`);
  return head;
}

/** The `ver` query parameter: the room versions the asking server supports (`["1"]` when absent, for make_join). */
export function requireVersionSupported(head: RoomHead, origin: string, query: unknown): void {
  const ver = parseQuery(VerQuery, query).ver;
  const supported = ver === undefined ? ['1'] : Array.isArray(ver) ? ver : [ver];
  if (!supported.includes(head.version.id))
    throw new MatrixError(
      'M_INCOMPATIBLE_ROOM_VERSION',
      `Room version ${head.version.id} is not supported by ${origin}`,
      { room_version: head.version.id },
    );
}

/**
 * The template of a membership event of `userId` (a user of `origin`) over the room's current state, checked against
 * the authorization rules (403 with the reason when they refuse). `check` runs first (version, join rule).
 */
export async function makeMembership(
  deps: RoomRoutesDeps,
  membership: Membership,
  origin: string,
  params: unknown,
  check: (head: RoomHead, userId: string) => JsonObject | Promise<JsonObject> = () => ({}),
): Promise<{ room_version: string; event: JsonObject }> {
  const { roomId, userId } = parseParams(MakeParams, params);
  if (serverNameOf(userId) !== origin)
    throw new MatrixError('M_FORBIDDEN', `${origin} cannot ${membership} for ${userId}`);
  const head = await headOf(deps, roomId);
  requireAclAllows(head, origin);
  const extra = await check(head, userId);
  const event = membershipTemplate(head, userId, { membership, ...extra });
  const allowed = checkEventAuth(
    forRules(event as unknown as Pdu, head.version),
    lookupIn(head.state),
    head.version,
    {
      eventIdOf: (p) => [...head.state.values()].find((e) => e.pdu === p)?.eventId ?? '',
      // The template is not signed yet: the authorising server's signature is checked on send_join.
      isSignedBy: () => true,
    },
  );
  if (!allowed.allowed) throw new MatrixError('M_FORBIDDEN', allowed.reason);
  return { room_version: head.version.id, event };
}

/**
 * Checks a signed membership event sent to this server (send_join, send_leave, send_knock) and persists it; returns
 * the event as stored. `prepare` may countersign it first (a restricted join this server authorised).
 */
export async function sendMembership(
  deps: RoomRoutesDeps,
  membership: Membership,
  origin: string,
  params: unknown,
  body: unknown,
  prepare: (head: RoomHead, event: JsonObject) => JsonObject | Promise<JsonObject> = (_h, e) => e,
): Promise<Pdu> {
  const { roomId, eventId } = parseParams(SendParams, params);
  const head = await headOf(deps, roomId);
  requireAclAllows(head, origin);
  if (!isJsonObject(body)) throw new MatrixError('M_BAD_JSON', 'The body must be the signed event');
  const content = body.content;
  if (
    body.type !== 'm.room.member' ||
    !isJsonObject(content) ||
    content.membership !== membership ||
    typeof body.sender !== 'string' ||
    body.state_key !== body.sender ||
    serverNameOf(body.sender) !== origin
  )
    throw new MatrixError('M_INVALID_PARAM', `Not a ${membership} of a user of ${origin}`);
  const prepared = await prepare(head, body);
  const checked = await checkReceivedPdu(deps.keyRing, prepared, head.version);
  if (!checked.ok) throw new MatrixError('M_INVALID_PARAM', checked.reason);
  if (checked.redacted) throw new MatrixError('M_INVALID_PARAM', 'The content hash does not match');
  if (checked.eventId !== eventId)
    throw new MatrixError('M_INVALID_PARAM', `The event id is ${checked.eventId}, not ${eventId}`);
  if (forRules(checked.raw, head.version).room_id !== roomId)
    throw new MatrixError('M_INVALID_PARAM', `The event is not in ${roomId}`);
  // The sending server sends it to nobody else: this server relays it to the room's other servers.
  await markSendOnBehalf(deps.storage.db, eventId, origin);
  let outcome;
  try {
    outcome = await deps.writer.ingestRemote(roomId, { eventId, raw: checked.raw });
  } catch (err) {
    if (err instanceof MissingEventsError) throw new MatrixError('M_INVALID_PARAM', err.message);
    throw err;
  }
  if (outcome.status !== 'accepted' && !(outcome.status === 'duplicate' && outcome.reason === undefined))
    throw new MatrixError('M_FORBIDDEN', outcome.reason ?? `The ${membership} was not accepted`);
  return checked.raw;
}
