/** Every HTTP route module, registered on one Fastify app. */
import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from './context.js';
import { sharedSecretRegisterRoutes } from './admin/register.js';
import { accountRoutes } from './client/account.js';
import { deviceRoutes } from './client/devices.js';
import { loginRoutes } from './client/login.js';
import { registerRoutes } from './client/register.js';
import { versionRoutes } from './client/versions.js';

export function registerClientRoutes(app: FastifyInstance, deps: ApiDeps): void {
  versionRoutes(app, deps);
  loginRoutes(app, deps);
  registerRoutes(app, deps);
  deviceRoutes(app, deps);
  accountRoutes(app, deps);
  sharedSecretRegisterRoutes(app, deps);
}
