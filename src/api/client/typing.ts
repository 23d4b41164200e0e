/** Typing notifications (client-server API "Typing Notifications"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { lookupIn } from '../../input/room-head.js';
import type { RoomWriter } from '../../input/room-writer.js';
import { membershipOf } from '../../rooms/auth/power-levels.js';
import { DEFAULT_TYPING_TIMEOUT_MS } from '../../sync/typing.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden } from '../errors.js';
import { parseBody, parseParams } from '../validate.js';

const Params = z.object({ roomId: z.string(), userId: z.string() });
const Body = z.looseObject({
  typing: z.boolean(),
  timeout: z.number().nonnegative().optional(),
});

/** Throws 403 M_FORBIDDEN unless `userId` is joined to the room (an unknown room included, as in Synapse). */
export async function requireJoined(writer: RoomWriter, roomId: string, userId: string): Promise<number> {
  const head = await writer.head(roomId);
  if (!head || membershipOf(userId, lookupIn(head.state)) !== 'join') {
    throw forbidden(`User ${userId} is not in room ${roomId}`);
  }
  return head.roomNid;
}

export function typingRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'auth' | 'writer' | 'typing'>): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId} */
  app.put('/_matrix/client/v3/rooms/:roomId/typing/:userId', guard, async (req) => {
    const { roomId, userId } = parseParams(Params, req.params);
    const body = parseBody(Body, req.body);
    if (userId !== requester(req).userId) throw forbidden("Cannot set another user's typing state");
    await requireJoined(deps.writer, roomId, userId);
    // The store caps the timeout and wakes the room's long-polls.
    deps.typing.set(roomId, userId, body.typing, body.timeout ?? DEFAULT_TYPING_TIMEOUT_MS);
    return {};
  });
}
