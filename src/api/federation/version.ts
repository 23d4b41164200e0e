/** GET /_matrix/federation/v1/version, and GET /.well-known/matrix/server when serve_server_wellknown is on. */
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config/schema.js';
import { formatHostPort, parseServerName } from '../../federation/server-name.js';
import { HEARTH_VERSION } from '../../util/version.js';

export function federationVersionRoutes(app: FastifyInstance): void {
  app.get('/_matrix/federation/v1/version', async () => ({
    server: { name: 'Hearth', version: HEARTH_VERSION },
  }));
}

/**
 * Delegation to the server name's own port, or to 443 when it has none (Synapse's answer): a reverse proxy on 443
 * then serves the federation API. Registered on client listeners, where /.well-known is fetched.
 */
export function serverWellKnownRoutes(
  app: FastifyInstance,
  config: Pick<Config, 'server_name' | 'serve_server_wellknown'>,
): void {
  if (!config.serve_server_wellknown) return;
  const parsed = parseServerName(config.server_name);
  const server = parsed ? formatHostPort(parsed.host, parsed.port ?? 443) : `${config.server_name}:443`;
  app.get('/.well-known/matrix/server', async () => ({ 'm.server': server }));
}
