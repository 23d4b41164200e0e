/**
 * GET /_matrix/client/v1/mutual_rooms (v1.19, MSC2666): the rooms the caller and `user_id` are both joined to, in
 * batches of MUTUAL_ROOMS_BATCH by room id, with the total count. Also at MSC2666's unstable path, which Synapse
 * serves and clients still call. An unknown user shares no rooms (an empty list, as the spec requires).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isValidRoomId, parseUserId } from '../../rooms/identifiers.js';
import { mutualRooms } from '../../storage/mutual-rooms.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { invalidParam, missingParam } from '../errors.js';
import { parseQuery } from '../validate.js';

export const MUTUAL_ROOMS_BATCH = 100;

const MutualQuery = z.looseObject({ user_id: z.string().optional(), from: z.string().optional() });

/** The `from` token: the last room id of the previous batch, base64url (opaque to clients). */
const encodeToken = (roomId: string): string => Buffer.from(roomId, 'utf8').toString('base64url');

function decodeToken(token: string): string {
  const roomId = Buffer.from(token, 'base64url').toString('utf8');
  if (!isValidRoomId(roomId) || encodeToken(roomId) !== token) throw invalidParam('Invalid `from` token');
  return roomId;
}

export function mutualRoomsRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'storage' | 'auth'>): void {
  const handler = async (req: FastifyRequest) => {
    const q = parseQuery(MutualQuery, req.query);
    const me = requester(req).userId;
    if (q.user_id === undefined) throw missingParam('Missing user_id');
    if (!parseUserId(q.user_id)) throw invalidParam('The user ID provided was invalid');
    if (q.user_id === me) throw invalidParam('You cannot request a list of shared rooms with yourself');
    const after = q.from === undefined ? undefined : decodeToken(q.from);
    const { roomIds, count } = await mutualRooms(
      deps.storage.db,
      me,
      q.user_id,
      after,
      MUTUAL_ROOMS_BATCH + 1,
    );
    const joined = roomIds.slice(0, MUTUAL_ROOMS_BATCH);
    const last = joined[joined.length - 1];
    return roomIds.length > MUTUAL_ROOMS_BATCH && last !== undefined
      ? { joined, count, next_batch: encodeToken(last) }
      : { joined, count };
  };
  const guard = { preHandler: deps.auth.requireUser };
  app.get('/_matrix/client/v1/mutual_rooms', guard, handler);
  app.get('/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms', guard, handler);
}
