/** Every HTTP route module, registered on one Fastify app. */
import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from './context.js';
import { sharedSecretRegisterRoutes } from './admin/register.js';
import { accountRoutes } from './client/account.js';
import { createRoomRoutes } from './client/create-room.js';
import { membershipRoutes } from './client/membership.js';
import { sendRoutes } from './client/send.js';
import { deviceRoutes } from './client/devices.js';
import { loginRoutes } from './client/login.js';
import { registerRoutes } from './client/register.js';
import { versionRoutes } from './client/versions.js';
import { accountDataRoutes } from './client/account-data.js';
import { filterRoutes } from './client/filters.js';
import { profileRoutes } from './client/profile.js';
import { pushRulesRoutes } from './client/pushrules.js';
import { voipRoutes } from './client/voip.js';
import { roomReadRoutes } from './client/room-read.js';
import { roomStateRoutes } from './client/room-state.js';
import { relationRoutes } from './client/relations.js';
import { timestampRoutes } from './client/timestamp.js';
import { directoryRoutes } from './client/directory.js';
import { upgradeRoutes } from './client/upgrade.js';

export function registerClientRoutes(app: FastifyInstance, deps: ApiDeps): void {
  versionRoutes(app, deps);
  profileRoutes(app, deps);
  accountDataRoutes(app, deps);
  filterRoutes(app, deps);
  pushRulesRoutes(app, deps);
  voipRoutes(app, deps);
  loginRoutes(app, deps);
  registerRoutes(app, deps);
  deviceRoutes(app, deps);
  accountRoutes(app, deps);
  sharedSecretRegisterRoutes(app, deps);
  createRoomRoutes(app, deps);
  membershipRoutes(app, deps);
  sendRoutes(app, deps);
  roomReadRoutes(app, deps);
  roomStateRoutes(app, deps);
  relationRoutes(app, deps);
  timestampRoutes(app, deps);
  directoryRoutes(app, deps);
  upgradeRoutes(app, deps);
}
