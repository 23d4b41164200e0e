/**
 * Invite blocking (client-server API "Invite permission", v1.18): a local user whose `m.invite_permission_config`
 * global account data has `default_action: "block"` is not invited. The spec's endpoints answer 403
 * M_INVITE_BLOCKED: POST /rooms/{roomId}/invite, PUT /rooms/{roomId}/state/m.room.member/{stateKey} with
 * membership `invite`, and the federation's PUT /v2/invite/{roomId}/{eventId}; POST /createRoom leaves the blocked
 * users out of its `invite` list and still creates the room (as the spec allows).
 *
 * Like the guest gate (api/guest.ts) the check is added to those routes as they are registered (an `onRoute` hook),
 * after their own authentication: `client` for the client listener's routes, `federation` for the federation's.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { parseUserId } from '../../rooms/identifiers.js';
import type { Storage } from '../../storage/db.js';
import { syncExclusions } from '../../storage/sync-exclusions.js';
import { isJsonObject } from '../../util/validate.js';
import { MatrixError } from '../errors.js';

export { INVITE_PERMISSION_TYPE } from '../../storage/sync-exclusions.js';

const CLIENT_PREFIX = /^\/_matrix\/client\/(?:r0|v3|unstable)(?=\/)/;

type Check = (storage: Storage, serverName: string, req: FastifyRequest) => Promise<void>;

export function inviteBlocked(userId: string): MatrixError {
  return new MatrixError('M_INVITE_BLOCKED', `${userId} does not accept invites`, {}, 403);
}

/** Whether the local user `userId` blocks every invite. A missing or unparsable config blocks nothing. */
export async function blocksInvites(storage: Storage, userId: string): Promise<boolean> {
  return (await syncExclusions(storage.db, userId)).blocksInvites;
}

const isLocal = (userId: unknown, serverName: string): userId is string =>
  typeof userId === 'string' && parseUserId(userId, { historical: true })?.serverName === serverName;

async function refuse(storage: Storage, serverName: string, target: unknown): Promise<void> {
  if (isLocal(target, serverName) && (await blocksInvites(storage, target))) throw inviteBlocked(target);
}

const body = (req: FastifyRequest): Record<string, unknown> => (isJsonObject(req.body) ? req.body : {});
const params = (req: FastifyRequest): Record<string, string | undefined> =>
  req.params as Record<string, string | undefined>;

/** Checks by route (Fastify pattern after the client prefix, or the full federation path). */
const CHECKS: Record<string, Check> = {
  'POST /rooms/:roomId/invite': (s, sn, req) => refuse(s, sn, body(req).user_id),
  'PUT /rooms/:roomId/state/:eventType/:stateKey': async (s, sn, req) => {
    const p = params(req);
    if (p.eventType === 'm.room.member' && body(req).membership === 'invite') await refuse(s, sn, p.stateKey);
  },
  'POST /createRoom': async (s, sn, req) => {
    const b = body(req);
    if (!Array.isArray(b.invite)) return;
    const kept: unknown[] = [];
    for (const u of b.invite as unknown[]) {
      if (!(isLocal(u, sn) && (await blocksInvites(s, u)))) kept.push(u);
    }
    b.invite = kept;
  },
  'PUT /_matrix/federation/v2/invite/:roomId/:eventId': async (s, sn, req) => {
    const event = body(req).event;
    if (isJsonObject(event)) await refuse(s, sn, event.state_key);
  },
};

/** Adds the invite-blocking check to the matching routes registered after this call. */
export function inviteBlockGate(
  app: FastifyInstance,
  deps: { storage: Storage; serverName: string },
  which: 'client' | 'federation',
): void {
  app.addHook('onRoute', (route: RouteOptions) => {
    const url = route.url;
    if (typeof url !== 'string') return;
    const path = which === 'client' ? url.replace(CLIENT_PREFIX, '') : url;
    if (which === 'client' && path === url) return;
    if (which === 'federation' && !url.startsWith('/_matrix/federation/')) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const check = methods.map((m) => CHECKS[`${String(m)} ${path}`]).find((c) => c !== undefined);
    if (!check) return;
    const run = async (req: FastifyRequest, _reply: FastifyReply): Promise<void> =>
      check(deps.storage, deps.serverName, req);
    const existing = route.preHandler;
    const handlers = existing === undefined ? [] : Array.isArray(existing) ? existing : [existing];
    route.preHandler = [...handlers, run];
  });
}
