/**
 * Account suspension (client-server API "Account suspension", v1.13; set by PUT /admin/suspend/{userId}, v1.18): a
 * suspended user keeps reading, syncing, leaving, redacting their own events, managing devices, keys and key backup
 * and logging out, but gets 403 M_USER_SUSPENDED for the spec's recommended list of forbidden actions (as Synapse):
 * joining, knocking, inviting, sending events (state included; a redaction of one's own event is allowed), redacting
 * others' events, creating and upgrading rooms, changing the profile and uploading media.
 *
 * Like the guest gate (api/guest.ts) the check is added to the routes as they are registered (an `onRoute` hook), after
 * the route's own authentication.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import type { EventReader } from '../../read/event-reader.js';
import type { Storage } from '../../storage/db.js';
import { isSuspended } from '../../storage/suspensions.js';
import { MatrixError } from '../errors.js';

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** Paths after the client API prefix, as in api/guest.ts (media paths under `/media`). */
const FORBIDDEN: readonly (readonly [Method, string])[] = [
  ['POST', '/rooms/:roomId/join'],
  ['POST', '/join/:roomIdOrAlias'],
  ['POST', '/knock/:roomIdOrAlias'],
  ['POST', '/rooms/:roomId/invite'],
  ['PUT', '/rooms/:roomId/send/:eventType/:txnId'],
  ['POST', '/rooms/:roomId/send/:eventType'],
  ['PUT', '/rooms/:roomId/state/:eventType/:stateKey'],
  ['PUT', '/rooms/:roomId/state/:eventType'],
  ['PUT', '/rooms/:roomId/redact/:eventId/:txnId'],
  ['POST', '/createRoom'],
  ['POST', '/rooms/:roomId/upgrade'],
  ['PUT', '/profile/:userId/displayname'],
  ['PUT', '/profile/:userId/avatar_url'],
  ['PUT', '/profile/:userId/:keyName'],
  ['DELETE', '/profile/:userId/:keyName'],
  ['POST', '/media/upload'],
  ['PUT', '/media/upload/:serverName/:mediaId'],
  ['POST', '/media/create'],
];

const CLIENT_PREFIX = /^\/_matrix\/client\/(?:r0|v1|v3|unstable)(?=\/)/;
const MEDIA_PREFIX = /^\/_matrix\/media\/(?:r0|v1|v3)(?=\/)/;
const GATED = new Set(FORBIDDEN.map(([m, p]) => `${m} ${p}`));

export function suspendedError(): MatrixError {
  return new MatrixError('M_USER_SUSPENDED', 'Your account has been suspended', {}, 403);
}

/** Whether `method url` (a Fastify route pattern) is an action a suspended user may not take. */
export function suspensionGated(method: string, url: string): boolean {
  const path = url.replace(CLIENT_PREFIX, '').replace(MEDIA_PREFIX, '/media');
  return path !== url && GATED.has(`${method} ${path}`);
}

/** The event a redaction request names: the /redact path's, or `redacts` of an m.room.redaction sent with /send. */
function redactionTarget(req: FastifyRequest): string | undefined | null {
  const params = req.params as Record<string, string | undefined>;
  if (req.routeOptions.url?.includes('/redact/')) return params.eventId ?? null;
  if (params.eventType !== 'm.room.redaction') return undefined;
  const body = req.body as Record<string, unknown> | undefined;
  return typeof body?.redacts === 'string' ? body.redacts : null;
}

/** Adds the suspension check to the gated routes registered after this call (call before the route modules). */
export function suspensionGate(app: FastifyInstance, deps: { storage: Storage; reader: EventReader }): void {
  const check = async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const userId = req.requester?.userId;
    if (userId === undefined || !(await isSuspended(deps.storage.db, userId))) return;
    const target = redactionTarget(req);
    if (target === undefined) throw suspendedError();
    // A redaction: allowed for the user's own events only (an unknown event is left to the route's answer).
    const event = target === null ? undefined : await deps.reader.byId(target);
    if (event && event.pdu.sender !== userId) throw suspendedError();
  };
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const url = route.url;
    if (typeof url !== 'string' || !methods.some((m) => suspensionGated(String(m), url))) return;
    const existing = route.preHandler;
    const handlers = existing === undefined ? [] : Array.isArray(existing) ? existing : [existing];
    route.preHandler = [...handlers, check];
  });
}
