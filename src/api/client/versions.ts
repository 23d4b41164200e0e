/** GET /_matrix/client/versions, /.well-known/matrix/{client,server}, GET /_matrix/client/v3/capabilities */
import type { FastifyInstance } from 'fastify';
import {
  DEFAULT_ROOM_VERSION,
  isKnownRoomVersion,
  roomVersionsCapability,
} from '../../rooms/room-versions.js';
import type { ApiDeps } from '../context.js';

/** Spec versions whose required endpoints Hearth serves. */
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
];

export function baseUrl(deps: Pick<ApiDeps, 'config'>): string {
  const c = deps.config;
  if (c.public_baseurl) return c.public_baseurl.endsWith('/') ? c.public_baseurl : `${c.public_baseurl}/`;
  return `https://${c.server_name}/`;
}

export function versionRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'config' | 'auth'>): void {
  app.get('/_matrix/client/versions', async () => ({
    versions: SPEC_VERSIONS,
    unstable_features: {},
  }));

  app.get('/.well-known/matrix/client', async () => ({
    'm.homeserver': { base_url: baseUrl(deps) },
  }));

  app.get('/.well-known/matrix/server', async () => {
    const host = deps.config.server_name.includes(':')
      ? deps.config.server_name
      : `${deps.config.server_name}:443`;
    return { 'm.server': host };
  });

  /** GET /_matrix/client/v3/capabilities */
  app.get('/_matrix/client/v3/capabilities', { preHandler: deps.auth.requireUser }, async () => ({
    capabilities: {
      'm.change_password': { enabled: true },
      // Every version 1-12 can be created and upgraded to (rooms/room-versions.ts marks them all stable).
      'm.room_versions': roomVersionsCapability(
        isKnownRoomVersion(deps.config.default_room_version)
          ? deps.config.default_room_version
          : DEFAULT_ROOM_VERSION,
      ),
      'm.set_displayname': { enabled: true },
      'm.set_avatar_url': { enabled: true },
      'm.3pid_changes': { enabled: false },
      'm.get_login_token': { enabled: false },
    },
  }));
}
