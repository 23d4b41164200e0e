/**
 * GET /_matrix/client/versions, /.well-known/matrix/client, GET /_matrix/client/v3/capabilities.
 * (/.well-known/matrix/server is api/federation/version.ts: served when serve_server_wellknown is on.)
 */
import type { FastifyInstance } from 'fastify';
import {
  DEFAULT_ROOM_VERSION,
  isKnownRoomVersion,
  roomVersionsCapability,
} from '../../rooms/room-versions.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';

/**
 * Spec versions whose required endpoints and behaviours Hearth serves. v1.12 adds account locking (401
 * M_USER_LOCKED with soft_logout on every endpoint but logout), authenticated media for guests and `via` on joins;
 * v1.13 room reports, one-time keys claimed in upload order and account suspension; v1.14 user reports
 * (api/client/report.ts); v1.15 room summaries (room-summary.ts; OAuth 2.0's /auth_metadata is optional and
 * answered 404); v1.16 custom profile fields and the m.profile_fields capability (profile-fields.ts); v1.17
 * application services' device masquerading and device management (MSC4326, MSC4190); v1.18 the admin lock/suspend
 * endpoints (admin-accounts.ts), invite blocking (invite-blocking.ts; stored invites hidden from /sync by
 * sync/ignored.ts) and m.room.redaction through PUT /send (send.ts; the other v1.18 client changes are the client's
 * or optional; policy servers are a server-server matter).
 * Not yet listed: v1.19, for want of `unsigned.replaces_state` on state events (the writer would have to record it,
 * as Synapse does when it computes an event's context); GET /_matrix/client/v1/mutual_rooms is served.
 */
export const SPEC_VERSIONS = [
  'v1.1',
  'v1.2',
  'v1.3',
  'v1.4',
  'v1.5',
  'v1.6',
  'v1.7',
  'v1.8',
  'v1.9',
  'v1.10',
  'v1.11',
  'v1.12',
  'v1.13',
  'v1.14',
  'v1.15',
  'v1.16',
  'v1.17',
  'v1.18',
];

export function baseUrl(deps: Pick<ApiDeps, 'config'>): string {
  const c = deps.config;
  if (c.public_baseurl) return c.public_baseurl.endsWith('/') ? c.public_baseurl : `${c.public_baseurl}/`;
  return `https://${c.server_name}/`;
}

export function versionRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'config' | 'auth'>): void {
  app.get('/_matrix/client/versions', async () => ({
    versions: SPEC_VERSIONS,
    // Simplified sliding sync (MSC4186) at /unstable/org.matrix.simplified_msc3575/sync (api/client/sliding-sync.ts).
    // The MSC flags Synapse advertises for what Hearth serves before the versions that define it are listed.
    unstable_features: {
      'org.matrix.simplified_msc3575': true,
      'im.nheko.summary': true,
      'uk.half-shot.msc2666.query_mutual_rooms': true,
      'uk.tcpip.msc4133.stable': true,
      'uk.timedout.msc4323': true,
    },
  }));

  app.get('/.well-known/matrix/client', async () => ({
    'm.homeserver': { base_url: baseUrl(deps) },
  }));

  /** GET /_matrix/client/v3/capabilities */
  app.get('/_matrix/client/v3/capabilities', { preHandler: deps.auth.requireUser }, async (req) => ({
    capabilities: {
      // v1.18 (MSC4323): what PUT /v1/admin/{suspend,lock}/{userId} lets this user do; omitted for non-admins.
      ...(requester(req).isAdmin ? { 'm.account_moderation': { suspend: true, lock: true } } : {}),
      'm.change_password': { enabled: true },
      // Every version 1-12 can be created and upgraded to (rooms/room-versions.ts marks them all stable).
      'm.room_versions': roomVersionsCapability(
        isKnownRoomVersion(deps.config.default_room_version)
          ? deps.config.default_room_version
          : DEFAULT_ROOM_VERSION,
      ),
      // Custom profile fields (v1.16, api/client/profile-fields.ts): every field may be changed.
      'm.profile_fields': { enabled: true },
      'm.set_displayname': { enabled: true },
      'm.set_avatar_url': { enabled: true },
      'm.3pid_changes': { enabled: false },
      'm.get_login_token': { enabled: false },
    },
  }));
}
