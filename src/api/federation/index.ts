/** The routes of a listener with the `federation` resource (server-server API and key API) or `keys` alone. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { FederationClient } from '../../federation/client.js';
import type { KeyRing } from '../../federation/keyring.js';
import type { FederationSender } from '../../federation/sender/sender.js';
import type { RoomWriter } from '../../input/room-writer.js';
import type { SigningKey } from '../../keys/signing-key.js';
import type { MediaService } from '../../media/service.js';
import type { Storage } from '../../storage/db.js';
import { federationAuth } from './auth.js';
import { federationDirectoryRoutes } from './directory.js';
import { federationEventRoutes } from './events.js';
import { keyRoutes } from './keys.js';
import { federationMediaRoutes, legacyFederationMediaRoutes } from './media.js';
import { openidFederationRoutes } from './openid.js';
import { queryRoutes } from './query.js';
import { federationRoomRoutes } from './rooms.js';
import { federationKnockRoutes } from './rooms-knock.js';
import { sendRoutes, type SendRoutesDeps } from './send.js';
import { thirdPartyInviteRoutes } from './third-party-invite.js';
import { inviteBlockGate } from '../client/invite-blocking.js';
import { userKeysRoutes } from './user-keys.js';
import { federationVersionRoutes } from './version.js';

export interface FederationDeps {
  serverName: string;
  storage: Storage;
  keyRing: KeyRing;
  client: FederationClient;
  /** This server's signing key (countersigning invites). */
  signingKey: SigningKey;
  /** The outbound queue: a server that sends us a signed request is up, so its queue is retried now. */
  sender?: FederationSender | undefined;
  /** What /send needs beyond the above (typing store, notifier, PDU ingestion); without it /send is not served. */
  inbound?: Omit<SendRoutesDeps, 'authenticate' | 'storage' | 'serverName'> | undefined;
  /** The room writer: joins, leaves and reads of rooms (without it those routes are not served). */
  writer?: RoomWriter | undefined;
  /** The media repository: local media for other servers (without it the media routes are not served). */
  media?: MediaService | undefined;
  /**
   * Also serve the legacy unauthenticated `/_matrix/media/{r0,v3}/download|thumbnail` paths for this server's media,
   * which servers before Matrix v1.11 (Synapse ≤ 1.119) fetch from the federation port. Off on a listener that also
   * serves `client`, where the client API's own legacy routes answer.
   */
  legacyMedia?: boolean;
}

export function registerFederationRoutes(app: FastifyInstance, deps: FederationDeps): void {
  inviteBlockGate(app, deps, 'federation');
  const verify = federationAuth(app, {
    serverName: deps.serverName,
    keyRing: deps.keyRing,
    allowsServer: (name) => deps.client.allowsServer(name),
  });
  const authenticate = async (req: FastifyRequest): Promise<void> => {
    await verify(req);
    deps.sender?.remoteIsUp(req.federationOrigin);
  };
  keyRoutes(app, deps);
  federationVersionRoutes(app);
  queryRoutes(app, { serverName: deps.serverName, storage: deps.storage, authenticate });
  openidFederationRoutes(app, deps);
  thirdPartyInviteRoutes(app, { authenticate });
  if (deps.media) {
    federationMediaRoutes(app, { media: deps.media, authenticate });
    if (deps.legacyMedia)
      legacyFederationMediaRoutes(app, { media: deps.media, serverName: deps.serverName });
  }
  if (deps.writer) {
    const rooms = { serverName: deps.serverName, storage: deps.storage, writer: deps.writer, authenticate };
    federationRoomRoutes(app, { ...rooms, keyRing: deps.keyRing, signingKey: deps.signingKey });
    federationKnockRoutes(app, { ...rooms, keyRing: deps.keyRing, signingKey: deps.signingKey });
    federationEventRoutes(app, rooms);
    federationDirectoryRoutes(app, rooms);
  }
  if (deps.inbound) {
    sendRoutes(app, { ...deps.inbound, serverName: deps.serverName, storage: deps.storage, authenticate });
    userKeysRoutes(app, {
      serverName: deps.serverName,
      storage: deps.storage,
      notifier: deps.inbound.notifier,
      authenticate,
    });
  }
}

export { keyRoutes };
