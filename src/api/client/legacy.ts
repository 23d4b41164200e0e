/**
 * Deprecated endpoints that clients, bots and SyTest still call, served as Synapse serves them: the old event
 * stream (GET /events), GET /initialSync, GET /rooms/{roomId}/initialSync, GET /events/{eventId}, and
 * POST /rooms/{roomId}/send/{eventType}, the pre-r0 send without a transaction id (no spec version since r0 has
 * it; Synapse still serves it, generating a transaction id, so a retried request sends the event twice).
 * The read models live in sync/legacy-stream.ts.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { canonicalJson } from '../../rooms/canonical-json.js';
import { checkContent, checkEventType, MAX_PDU_BYTES } from '../../roomsvc/content.js';
import { parseStreamToken } from '../../read/tokens.js';
import { eventForUser, eventStream, initialSync, roomInitialSync } from '../../sync/legacy-stream.js';
import { dropIgnoredJson, syncExclusions } from '../../sync/ignored.js';
import { isJsonObject } from '../../util/validate.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError, notFound } from '../errors.js';
import { limitParam, parseParams, parseQuery } from '../validate.js';

/** The longest an /events request waits (as /sync); Synapse's default wait when `timeout` is absent. */
const MAX_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_TIMEOUT_MS = 30_000;

const EventsQuery = z.object({
  from: z.string().optional(),
  timeout: z.coerce.number().int().min(0).optional(),
  limit: limitParam(100, 1000).pipe(z.number().min(1)),
  room_id: z.string().optional(),
});
const InitialSyncQuery = z.object({
  limit: limitParam(10, 1000),
  archived: z
    .enum(['true', 'false'])
    .optional()
    .transform((v) => v === 'true'),
});
const RoomInitialSyncQuery = z.object({ limit: limitParam(10, 1000) });
const RoomParams = z.object({ roomId: z.string() });
const EventParams = z.object({ eventId: z.string().min(1) });
const SendParams = z.object({ roomId: z.string(), eventType: z.string() });

/** A room snapshot with the ignored users' messages left out of `messages.chunk` (a new object when any are). */
function withMessagesFiltered<T>(ignored: ReadonlySet<string>, room: T): T {
  if (ignored.size === 0 || !isJsonObject(room) || !isJsonObject(room.messages)) return room;
  const chunk = room.messages.chunk;
  if (!Array.isArray(chunk)) return room;
  return { ...room, messages: { ...room.messages, chunk: dropIgnoredJson(ignored, chunk) } };
}

export function legacyRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };
  const ignoredBy = async (userId: string) => (await syncExclusions(deps.storage.db, userId)).ignored;
  const legacyDeps = { ...deps, presenceEnabled: deps.config.presence.enabled };

  /** GET /_matrix/client/v3/events (deprecated): the event stream after `from`, long-polling up to `timeout`. */
  app.get('/_matrix/client/v3/events', guard, async (req) => {
    const r = requester(req);
    const q = parseQuery(EventsQuery, req.query);
    const res = await eventStream(legacyDeps, {
      userId: r.userId,
      deviceId: r.deviceId,
      from: q.from === undefined ? undefined : parseStreamToken(q.from, 'from').pos,
      timeoutMs: Math.min(q.timeout ?? DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS),
      limit: q.limit,
      roomId: q.room_id,
    });
    return { ...res, chunk: dropIgnoredJson(await ignoredBy(r.userId), res.chunk) };
  });

  /** GET /_matrix/client/v3/events/{eventId} (deprecated): one event the user may see, else 404. */
  app.get('/_matrix/client/v3/events/:eventId', guard, async (req) => {
    const r = requester(req);
    const { eventId } = parseParams(EventParams, req.params);
    const ev = await eventForUser(deps, r, eventId);
    if (dropIgnoredJson(await ignoredBy(r.userId), [ev]).length === 0) throw notFound('Event not found');
    return ev;
  });

  /** GET /_matrix/client/v3/initialSync (deprecated) */
  app.get('/_matrix/client/v3/initialSync', guard, async (req) => {
    const r = requester(req);
    const q = parseQuery(InitialSyncQuery, req.query);
    const res = await initialSync(legacyDeps, {
      userId: r.userId,
      deviceId: r.deviceId,
      limit: q.limit,
      archived: q.archived,
    });
    const ignored = await ignoredBy(r.userId);
    if (Array.isArray(res.rooms)) res.rooms = res.rooms.map((room) => withMessagesFiltered(ignored, room));
    return res;
  });

  /** GET /_matrix/client/v3/rooms/{roomId}/initialSync */
  app.get('/_matrix/client/v3/rooms/:roomId/initialSync', guard, async (req) => {
    const r = requester(req);
    const { roomId } = parseParams(RoomParams, req.params);
    const q = parseQuery(RoomInitialSyncQuery, req.query);
    const res = await roomInitialSync(legacyDeps, {
      userId: r.userId,
      deviceId: r.deviceId,
      roomId,
      limit: q.limit,
    });
    return withMessagesFiltered(await ignoredBy(r.userId), res);
  });

  /** POST /_matrix/client/v3/rooms/{roomId}/send/{eventType} (pre-r0): a send without idempotency. */
  app.post('/_matrix/client/v3/rooms/:roomId/send/:eventType', guard, async (req) => {
    const r = requester(req);
    const { roomId, eventType } = parseParams(SendParams, req.params);
    checkEventType(eventType);
    const content = checkContent(req.body ?? {});
    // The same bounds as PUT send: the PDU envelope adds well under 2 KB to the content.
    if (Buffer.byteLength(canonicalJson(content)) > MAX_PDU_BYTES - 2048) {
      throw new MatrixError('M_TOO_LARGE', 'Event too large (the limit is 65536 bytes)');
    }
    if (!r.isAdmin && !r.exemptFromRateLimits)
      deps.rateLimiter.check(`message:${r.userId}`, deps.config.rate_limiting.message);
    const res = await deps.writer.send(roomId, { type: eventType, sender: r.userId, content });
    return { event_id: res.eventId };
  });
}
