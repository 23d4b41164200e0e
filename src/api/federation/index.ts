/** The routes of a listener with the `federation` resource (server-server API and key API) or `keys` alone. */
import type { FastifyInstance } from 'fastify';
import type { FederationClient } from '../../federation/client.js';
import type { KeyRing } from '../../federation/keyring.js';
import type { Storage } from '../../storage/db.js';
import { federationAuth } from './auth.js';
import { keyRoutes } from './keys.js';
import { openidFederationRoutes } from './openid.js';
import { queryRoutes } from './query.js';
import { federationVersionRoutes } from './version.js';

export interface FederationDeps {
  serverName: string;
  storage: Storage;
  keyRing: KeyRing;
  client: FederationClient;
}

export function registerFederationRoutes(app: FastifyInstance, deps: FederationDeps): void {
  const authenticate = federationAuth(app, {
    serverName: deps.serverName,
    keyRing: deps.keyRing,
    allowsServer: (name) => deps.client.allowsServer(name),
  });
  keyRoutes(app, deps);
  federationVersionRoutes(app);
  queryRoutes(app, { serverName: deps.serverName, storage: deps.storage, authenticate });
  openidFederationRoutes(app, deps);
}

export { keyRoutes };
