/** Reporting content (client-server API "Reporting content"): events, rooms (v1.13) and users (v1.14). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseUserId } from '../../rooms/identifiers.js';
import { reportEvent, reportRoom } from '../../roomsvc/report.js';
import { insertUserReport } from '../../storage/user-reports.js';
import { getUser } from '../../storage/users.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { badJson, invalidParam } from '../errors.js';
import type { RateLimitRule } from '../ratelimit.js';
import { parseBody } from '../validate.js';

/** `score` was removed in v1.18; it is still stored when a client sends it (as Synapse does). */
const EventReportBody = z.looseObject({
  reason: z.string().optional(),
  score: z.number().int().optional(),
});
const RoomReportBody = z.looseObject({ reason: z.string() });
const UserReportBody = z.looseObject({ reason: z.string() });

/** Synapse's `rc_reports` default: one report a second, bursts of five, per user and per IP (admins exempt). */
export const REPORT_RATE_LIMIT: RateLimitRule = { per_second: 1, burst_count: 5 };
/** Synapse refuses longer user report reasons (M_BAD_JSON). */
const MAX_USER_REPORT_REASON = 1000;

export function reportRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'config' | 'storage' | 'writer' | 'reader' | 'auth' | 'rateLimiter'>,
): void {
  const { storage, writer, reader, auth } = deps;
  const r = { storage, writer, reader };
  const guard = { preHandler: auth.requireUser };
  const limit = (req: FastifyRequest): void =>
    deps.rateLimiter.checkRequester('report', REPORT_RATE_LIMIT, requester(req), req.ip);

  /** POST /_matrix/client/v3/rooms/{roomId}/report/{eventId} */
  app.post<{ Params: { roomId: string; eventId: string } }>(
    '/_matrix/client/v3/rooms/:roomId/report/:eventId',
    guard,
    async (req) => {
      const body = parseBody(EventReportBody, req.body);
      limit(req);
      const { roomId, eventId } = req.params;
      await reportEvent(r, requester(req).userId, roomId, eventId, body.reason, body.score);
      return {};
    },
  );

  /** POST /_matrix/client/v3/rooms/{roomId}/report */
  app.post<{ Params: { roomId: string } }>('/_matrix/client/v3/rooms/:roomId/report', guard, async (req) => {
    const body = parseBody(RoomReportBody, req.body);
    limit(req);
    await reportRoom(r, requester(req).userId, req.params.roomId, body.reason);
    return {};
  });

  /**
   * POST /_matrix/client/v3/users/{userId}/report. Following the spec's advice against enumeration (and Synapse),
   * a report of an unknown or remote user answers 200 like any other and is not stored: only reports of this
   * server's existing users reach its admins.
   */
  app.post<{ Params: { userId: string } }>('/_matrix/client/v3/users/:userId/report', guard, async (req) => {
    const body = parseBody(UserReportBody, req.body);
    const target = req.params.userId;
    const parsed = parseUserId(target, { historical: true });
    if (!parsed) throw invalidParam(`Invalid user ID: ${target}`);
    if (body.reason.length > MAX_USER_REPORT_REASON) {
      throw badJson(`reason must be at most ${MAX_USER_REPORT_REASON} characters`);
    }
    limit(req);
    if (parsed.serverName !== deps.config.server_name) return {};
    if (!(await getUser(storage.db, target))) return {};
    await insertUserReport(storage.db, {
      targetUserId: target,
      userId: requester(req).userId,
      reason: body.reason,
      receivedTs: Date.now(),
    });
    return {};
  });
}
