/** What the HTTP route modules may use. Each module takes only what it needs from this. */
import type { Config } from '../config/schema.js';
import type { RoomWriter } from '../input/room-writer.js';
import type { EventReader } from '../read/event-reader.js';
import type { Notifier } from '../sync/notifier.js';
import type { SyncService } from '../sync/sync.js';
import type { RoomChangeCache } from '../sync/change-cache.js';
import type { TypingStore } from '../sync/typing.js';
import type { SigningKey } from '../keys/signing-key.js';
import type { Storage } from '../storage/db.js';
import type { Authenticator } from './auth.js';
import type { RateLimiter } from './ratelimit.js';
import type { Uia } from './uia.js';
import type { MediaService } from '../media/service.js';
import type { RemoteMediaCache } from '../media/remote-media.js';
import type { RemoteKeys } from '../e2ee/keys.js';
import type { RemoteQueries } from '../federation/remote-queries.js';
import type { FederationClient } from '../federation/client.js';
import type { KeyRing } from '../federation/keyring.js';
import type { AppServiceRegistry } from '../appservice/registration.js';
import type { AppServiceQueries } from '../appservice/queries.js';

export interface ApiDeps {
  config: Config;
  storage: Storage;
  auth: Authenticator;
  rateLimiter: RateLimiter;
  signingKey: SigningKey;
  uia: Uia;
  writer: RoomWriter;
  reader: EventReader;
  notifier: Notifier;
  typing: TypingStore;
  sync: SyncService;
  /** Rooms' latest event positions and events, from the writer's commits (sync's and sliding sync's shortcuts). */
  roomChanges: RoomChangeCache;
  media: MediaService;
  /** Other servers' media, fetched over federation and cached (client download and thumbnail endpoints). */
  remoteMedia?: RemoteMediaCache | undefined;
  /** Other servers' device and one-time keys over federation (client /keys/query and /keys/claim). */
  remoteKeys?: RemoteKeys | undefined;
  /** Other servers' profiles and room aliases over federation (client profile and directory endpoints). */
  remoteQueries?: RemoteQueries | undefined;
  /** Outbound federation and the key ring (joins to rooms this server is not in). */
  federation?: { client: FederationClient; keyRing: KeyRing } | undefined;
  /** Application services registered in app_service_config_files (empty registry when none). */
  appServices?: AppServiceRegistry | undefined;
  /** Asks application services about unknown aliases and users of their namespaces. */
  appServiceQueries?: AppServiceQueries | undefined;
}
