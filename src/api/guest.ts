/**
 * Guest access (client-server API module "Guest Access"): guest accounts may call only the endpoints the module lists,
 * plus the few more Synapse lets guests call (`allow_guest=True` in its servlets: capabilities, joined rooms, key
 * changes and signature upload, relations, hierarchy, public rooms, third-party protocols, TURN servers, media
 * config). Every other authenticated endpoint answers a guest 403 M_GUEST_ACCESS_FORBIDDEN, as Synapse does.
 *
 * The check is added to every route as it is registered (an `onRoute` hook), after the route's own authentication
 * preHandler, so no route module has to remember it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { MatrixError } from './errors.js';

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** Paths after the client API prefix (`/_matrix/client/{r0,v1,v3,unstable}`), with Fastify's `:param` syntax. */
const GUEST_ROUTES: readonly (readonly [Method, string])[] = [
  // Retrieving events and media (spec).
  ['GET', '/rooms/:roomId/state'],
  ['GET', '/rooms/:roomId/state/:eventType'],
  ['GET', '/rooms/:roomId/state/:eventType/:stateKey'],
  ['GET', '/rooms/:roomId/context/:eventId'],
  ['GET', '/rooms/:roomId/event/:eventId'],
  ['GET', '/rooms/:roomId/messages'],
  ['GET', '/rooms/:roomId/members'],
  ['GET', '/rooms/:roomId/initialSync'],
  ['GET', '/sync'],
  ['GET', '/events'],
  ['GET', '/media/download/:serverName/:mediaId'],
  ['GET', '/media/download/:serverName/:mediaId/:fileName'],
  ['GET', '/media/thumbnail/:serverName/:mediaId'],
  // Sending events (spec). Guests may only join and leave; Synapse also lets them send without a txn id.
  ['POST', '/rooms/:roomId/join'],
  ['POST', '/join/:roomIdOrAlias'],
  ['POST', '/rooms/:roomId/leave'],
  ['PUT', '/rooms/:roomId/send/:eventType/:txnId'],
  ['POST', '/rooms/:roomId/send/:eventType'],
  ['PUT', '/rooms/:roomId/state/:eventType/:stateKey'],
  ['PUT', '/rooms/:roomId/state/:eventType'],
  ['PUT', '/sendToDevice/:eventType/:txnId'],
  // Account maintenance (spec): the display name only, devices, whoami.
  ['GET', '/profile/:userId'],
  ['GET', '/profile/:userId/displayname'],
  ['GET', '/profile/:userId/avatar_url'],
  ['GET', '/profile/:userId/:keyName'], // custom profile fields (v1.16): readable by anyone, as Synapse does
  ['PUT', '/profile/:userId/displayname'],
  ['DELETE', '/profile/:userId/displayname'],
  ['GET', '/devices'],
  ['GET', '/devices/:deviceId'],
  ['PUT', '/devices/:deviceId'],
  ['GET', '/account/whoami'],
  // End-to-end encryption (spec; changes and signature upload: Synapse).
  ['POST', '/keys/upload'],
  ['POST', '/keys/query'],
  ['POST', '/keys/claim'],
  ['GET', '/keys/changes'],
  ['POST', '/keys/signatures/upload'],
  // Synapse's other guest endpoints.
  ['GET', '/capabilities'],
  ['GET', '/joined_rooms'],
  ['GET', '/publicRooms'],
  ['POST', '/publicRooms'],
  ['GET', '/rooms/:roomId/relations/:eventId'],
  ['GET', '/rooms/:roomId/relations/:eventId/:relType'],
  ['GET', '/rooms/:roomId/relations/:eventId/:relType/:eventType'],
  ['GET', '/rooms/:roomId/hierarchy'],
  ['GET', '/thirdparty/protocols'],
  ['GET', '/voip/turnServer'],
  ['GET', '/media/config'],
];

const CLIENT_PREFIX = /^\/_matrix\/client\/(?:r0|v1|v3|unstable)(?=\/)/;
const MEDIA_PREFIX = /^\/_matrix\/media\/(?:r0|v1|v3)(?=\/)/;
const ALLOWED = new Set(GUEST_ROUTES.map(([m, p]) => `${m} ${p}`));

/** Whether a guest may call the route `url` (a Fastify route pattern) with `method`. */
export function guestMayCall(method: string, url: string): boolean {
  const path = url.replace(CLIENT_PREFIX, '').replace(MEDIA_PREFIX, '/media');
  if (path === url) return true; // not a client or media API route: not gated here
  return ALLOWED.has(`${method === 'HEAD' ? 'GET' : method} ${path}`);
}

async function refuseGuest(req: FastifyRequest, _reply: FastifyReply): Promise<void> {
  if (req.requester?.isGuest) {
    throw new MatrixError('M_GUEST_ACCESS_FORBIDDEN', 'Guest access not allowed');
  }
}

/**
 * Adds the guest check to the routes registered after this call. Must be called before the route modules register
 * their routes.
 */
export function guestAccessGate(app: FastifyInstance): void {
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const url = route.url;
    if (typeof url !== 'string' || methods.every((m) => guestMayCall(String(m), url))) return;
    const existing = route.preHandler;
    const handlers = existing === undefined ? [] : Array.isArray(existing) ? existing : [existing];
    route.preHandler = [...handlers, refuseGuest];
  });
}
