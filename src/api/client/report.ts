/** Reporting content (client-server API "Reporting content"): events and rooms. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { reportEvent, reportRoom } from '../../roomsvc/report.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseBody } from '../validate.js';

/** `score` was removed in v1.18; it is still stored when a client sends it (as Synapse does). */
const EventReportBody = z.looseObject({
  reason: z.string().optional(),
  score: z.number().int().optional(),
});
const RoomReportBody = z.looseObject({ reason: z.string() });

export function reportRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'storage' | 'writer' | 'reader' | 'auth'>,
): void {
  const { storage, writer, reader, auth } = deps;
  const r = { storage, writer, reader };
  const guard = { preHandler: auth.requireUser };

  /** POST /_matrix/client/v3/rooms/{roomId}/report/{eventId} */
  app.post<{ Params: { roomId: string; eventId: string } }>(
    '/_matrix/client/v3/rooms/:roomId/report/:eventId',
    guard,
    async (req) => {
      const body = parseBody(EventReportBody, req.body);
      const { roomId, eventId } = req.params;
      await reportEvent(r, requester(req).userId, roomId, eventId, body.reason, body.score);
      return {};
    },
  );

  /** POST /_matrix/client/v3/rooms/{roomId}/report */
  app.post<{ Params: { roomId: string } }>('/_matrix/client/v3/rooms/:roomId/report', guard, async (req) => {
    const body = parseBody(RoomReportBody, req.body);
    await reportRoom(r, requester(req).userId, req.params.roomId, body.reason);
    return {};
  });
}
