/**
 * The Synapse-compatible admin API (admin users only; M_FORBIDDEN otherwise): server version, users, rooms and
 * registration tokens. Server notices (v1/send_server_notice) are not implemented yet.
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../context.js';
import { adminRoomRoutes } from './rooms.js';
import { adminTokenRoutes } from './tokens.js';
import { adminUserRoutes } from './users.js';

function hearthVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const VERSION = hearthVersion();

export function adminRoutes(app: FastifyInstance, deps: ApiDeps): void {
  /** GET /_synapse/admin/v1/server_version */
  app.get('/_synapse/admin/v1/server_version', { preHandler: deps.auth.requireAdmin }, async () => ({
    server_version: `Hearth ${VERSION}`,
  }));
  adminUserRoutes(app, deps);
  adminRoomRoutes(app, deps);
  adminTokenRoutes(app, deps);
}
