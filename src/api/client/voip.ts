/** VoIP (client-server API "Voice over IP") TURN credentials, and the third-party protocols Hearth bridges (none). */
import { createHmac } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config/schema.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';

export interface TurnCredentials {
  username: string;
  password: string;
  uris: string[];
  ttl: number;
}

/**
 * Time-limited TURN credentials in the TURN REST API scheme Synapse and coturn's `use-auth-secret` use:
 * username `<expiry unix seconds>:<user id>`, password base64(HMAC-SHA1(shared secret, username)).
 * Undefined when no TURN server is configured.
 */
export function turnCredentials(
  config: Pick<Config, 'turn_uris' | 'turn_shared_secret' | 'turn_user_lifetime_ms'>,
  userId: string,
  now = Date.now(),
): TurnCredentials | undefined {
  if (config.turn_uris.length === 0 || !config.turn_shared_secret) return undefined;
  const expiry = Math.floor((now + config.turn_user_lifetime_ms) / 1000);
  const username = `${expiry}:${userId}`;
  const password = createHmac('sha1', config.turn_shared_secret).update(username).digest('base64');
  return { username, password, uris: config.turn_uris, ttl: Math.floor(config.turn_user_lifetime_ms / 1000) };
}

export function voipRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'config' | 'auth'>): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** GET /_matrix/client/v3/voip/turnServer */
  app.get('/_matrix/client/v3/voip/turnServer', guard, async (req) => {
    return turnCredentials(deps.config, requester(req).userId) ?? {};
  });
}
