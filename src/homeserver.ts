/** Wires configuration, storage, keys and the HTTP API into a running homeserver. */
import { accessSync, constants, mkdirSync, readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Authenticator } from './api/auth.js';
import { registerClientRoutes } from './api/routes.js';
import { RateLimiter } from './api/ratelimit.js';
import { createHttpApp, whenIdle } from './api/server.js';
import { Uia } from './api/uia.js';
import { listenerResources, type Config } from './config/schema.js';
import { registerFederationRoutes, keyRoutes } from './api/federation/index.js';
import { serverWellKnownRoutes } from './api/federation/version.js';
import type { TlsFiles } from './api/tls.js';
import { FederationClient } from './federation/client.js';
import { ingestRemotePdus } from './federation/ingest.js';
import { AddressPolicy } from './federation/ip-ranges.js';
import { KeyRing } from './federation/keyring.js';
import { aclAllows } from './federation/room-access.js';
import type { JsonObject } from './rooms/event.js';
import { remoteKeys } from './federation/remote-keys.js';
import { cachingRemoteKeys, RemoteDeviceCache } from './federation/remote-device-cache.js';
import { usersSharingRoomWithLocal } from './storage/tracked-users.js';
import { remoteQueries } from './federation/remote-queries.js';
import { FederationSender } from './federation/sender/sender.js';
import { loadOrCreateSigningKey, type SigningKey } from './keys/signing-key.js';
import { RoomWriter } from './input/room-writer.js';
import { DamageReporter } from './integrity/damage.js';
import { EventReader } from './read/event-reader.js';
import { PushSender } from './push/sender.js';
import { filterVisible } from './read/visibility.js';
import { guestAccessEnforcer } from './roomsvc/guest-access.js';
import { profilePropagation } from './roomsvc/profile-propagation.js';
import { Notifier } from './sync/notifier.js';
import { SyncService } from './sync/sync.js';
import { RoomChangeCache } from './sync/change-cache.js';
import { TypingStore } from './sync/typing.js';
import { createLogger, moduleLogger } from './log.js';
import { RemoteMediaCache } from './media/remote-media.js';
import { MediaService } from './media/service.js';
import { healthRoutes, Instrumentation, loadMetrics, metricsRoutes } from './metrics/index.js';
import { recordDamage } from './storage/damage.js';
import { openStorage, type Storage } from './storage/db.js';
import { AppServiceRegistry, loadAppServices } from './appservice/registration.js';
import { ensureAppServiceSenders } from './appservice/senders.js';
import { AppServiceQueries } from './appservice/queries.js';
import { AppServiceSender } from './appservice/sender.js';

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

export interface Homeserver {
  config: Config;
  storage: Storage;
  signingKey: SigningKey;
  log: Logger;
  apps: FastifyInstance[];
  /** Application services from app_service_config_files. */
  appServices: AppServiceRegistry;
  /** The durable homeserver → application service transaction queues. */
  appServiceSender: AppServiceSender;
  /** Bound addresses as `http://host:port` (`https://` for TLS listeners), one per listener. */
  urls: string[];
  /** Who is typing where (in memory). */
  typing: TypingStore;
  /** The room writer (tests stand in for joins with it). */
  writer: RoomWriter;
  media: MediaService;
  /**
   * Outbound federation (signed requests, discovery), the key ring (own and other servers' keys) and the durable
   * outbound queue per destination.
   */
  federation: { client: FederationClient; keyRing: KeyRing; sender: FederationSender };
  close(): Promise<void>;
}

function ensureWritableDir(path: string, what: string): void {
  try {
    mkdirSync(path, { recursive: true });
    accessSync(path, constants.W_OK);
  } catch (err) {
    throw new StartupError(
      `${what} ${path} is not writable: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

function readFileOrFail(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new StartupError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** The registration files of app_service_config_files; a bad one fails the start naming the file and key. */
function loadAppServiceRegistry(config: Config): AppServiceRegistry {
  try {
    return new AppServiceRegistry(loadAppServices(config.app_service_config_files, config.server_name));
  } catch (err) {
    throw new StartupError((err as Error).message);
  }
}

/** The files a TLS listener needs, read once at start. */
function readTlsFiles(config: Config): TlsFiles | undefined {
  if (!config.listeners.some((l) => l.tls)) return undefined;
  return {
    cert: readFileOrFail(config.tls_certificate_path ?? '', 'tls_certificate_path'),
    key: readFileOrFail(config.tls_private_key_path ?? '', 'tls_private_key_path'),
  };
}

function startFederation(
  config: Config,
  storage: Storage,
  signingKey: SigningKey,
  log: Logger,
  damage: DamageReporter,
): Homeserver['federation'] {
  const ca = config.federation_custom_ca_list?.map((p) =>
    readFileOrFail(p, 'federation_custom_ca_list file').toString('utf8'),
  );
  const client = new FederationClient({
    serverName: config.server_name,
    signingKey,
    verifyCertificates: config.federation_verify_certificates,
    ca,
    addressPolicy: new AddressPolicy(config.ip_range_blacklist, config.ip_range_whitelist),
    domainWhitelist: config.federation_domain_whitelist,
  });
  if (
    !config.suppress_key_server_warning &&
    config.trusted_key_servers.some((s) => s.server_name === 'matrix.org')
  )
    log.warn(
      "trusted_key_servers includes matrix.org: other servers' keys are fetched through it first. It is long-lived, " +
        'stable and trusted, but you may prefer another notary; set suppress_key_server_warning: true to keep it quietly',
    );
  const keyRing = new KeyRing({
    serverName: config.server_name,
    signingKey,
    oldSigningKeys: config.old_signing_keys,
    keyRefreshIntervalMs: config.key_refresh_interval,
    db: storage.db,
    transport: client,
    trustedKeyServers: config.trusted_key_servers,
    log,
  });
  const sender = new FederationSender({
    storage,
    serverName: config.server_name,
    client,
    log,
    presenceEnabled: config.presence.enabled,
    damage,
  });
  return { client, keyRing, sender };
}

export async function startHomeserver(config: Config, opts: { logger?: Logger } = {}): Promise<Homeserver> {
  const log = opts.logger ?? createLogger(config.log_level);
  ensureWritableDir(config.media_store_path, 'media store');
  const signingKey = loadOrCreateSigningKey(config.signing_key_path);
  const tlsFiles = readTlsFiles(config);
  const appServices = loadAppServiceRegistry(config);
  const storage = await openStorage(config.database);
  await ensureAppServiceSenders(storage.db, appServices);
  const metricsOn = config.enable_metrics || config.listeners.some((l) => l.type === 'metrics');
  const metrics = metricsOn ? await loadMetrics() : undefined;
  const instrument = metrics ? new Instrumentation(metrics) : undefined;
  if (instrument) storage.db = storage.db.withPlugin(instrument.queryTimer());

  const auth = new Authenticator(storage, appServices);
  const writer = new RoomWriter(storage, config.server_name, signingKey);
  const logFor = (module: string): Logger => moduleLogger(log, module, config.log_levels);
  const damage = new DamageReporter(logFor('integrity'));
  damage.attach((records) =>
    recordDamage(
      storage.db,
      records.map((r) => ({
        kind: r.kind,
        roomId: r.roomId ?? '',
        eventId: r.eventId ?? '',
        detail: r.detail,
        seenTs: Date.now(),
        count: 1,
      })),
    ),
  );
  const reader = new EventReader(storage, damage);
  const notifier = new Notifier();
  const typing = new TypingStore({ onChange: (roomId) => notifier.notifyRooms([roomId]) });
  const media = new MediaService({ storage, config, log: logFor('media') });
  await media.init();
  const roomChanges = new RoomChangeCache(storage.stream.current);
  writer.onCommit((batch) => {
    for (const ev of batch.events) {
      roomChanges.record(batch.roomId, ev.streamOrdering, ev.pdu, ev.eventNid);
      if (ev.stored)
        reader.remember({
          event_nid: ev.eventNid,
          room_nid: ev.stored.roomNid,
          event_id: ev.eventId,
          json: ev.stored.json,
          stream_ordering: ev.streamOrdering,
          state_snapshot_nid: ev.stored.stateSnapshotNid,
          redacted_by: null,
          room_id: batch.roomId,
          room_version: ev.stored.roomVersion,
        });
    }
    notifier.notifyRooms([batch.roomId]);
    const members = batch.events.filter(
      (e) => e.pdu.type === 'm.room.member' && typeof e.pdu.state_key === 'string',
    );
    if (members.length) notifier.notifyUsers(members.map((e) => e.pdu.state_key as string));
    for (const ev of batch.events) {
      if (ev.pdu.type !== 'm.room.redaction') continue;
      const target = typeof ev.pdu.redacts === 'string' ? ev.pdu.redacts : ev.pdu.content.redacts;
      if (typeof target === 'string') reader.invalidateById(target);
    }
  });
  const pushSender = new PushSender({ storage, reader, log: logFor('push') });
  const appServiceSender = new AppServiceSender({
    storage,
    reader,
    registry: appServices,
    serverName: config.server_name,
    presenceEnabled: config.presence.enabled,
    log: logFor('appservice'),
    typing,
  });
  writer.onCommit(pushSender.onCommit);
  // Guests leave a room whose m.room.guest_access stops being can_join (Guest Access module).
  writer.onCommit(guestAccessEnforcer({ storage, writer, log: logFor('rooms') }));
  if (instrument) {
    instrument.writer(writer);
    instrument.notifier(notifier);
    instrument.caches(reader);
    instrument.damage(damage);
    instrument.integrity();
    instrument.toDeviceQueue(storage);
  }
  const federation = startFederation(config, storage, signingKey, logFor('federation'), damage);
  instrument?.federationSender(federation.sender);
  instrument?.appServiceSender(appServiceSender);
  const remoteDevices = new RemoteDeviceCache();
  const deps = {
    config,
    storage,
    auth,
    signingKey,
    rateLimiter: new RateLimiter(config.rate_limiting.enabled),
    uia: new Uia(storage, config.server_name),
    writer,
    reader,
    // Read by profileRoutes (ProfileDeps.onProfileChange): new display names and avatars reach the user's rooms.
    onProfileChange: profilePropagation({ storage, writer, log: logFor('rooms') }),
    notifier,
    roomChanges,
    sync: new SyncService({
      storage,
      reader,
      notifier,
      typing,
      presenceEnabled: config.presence.enabled,
      roomChanges,
      visible: (userId, events) => filterVisible({ reader, db: storage.db }, userId, events),
    }),
    typing,
    media,
    remoteMedia: new RemoteMediaCache({
      storage,
      config,
      log: logFor('media'),
      client: federation.client,
      store: media.store,
    }),
    remoteKeys: cachingRemoteKeys(remoteKeys(federation.client), remoteDevices, (users) =>
      usersSharingRoomWithLocal(storage.db, users),
    ),
    remoteQueries: remoteQueries(federation.client),
    federation: { client: federation.client, keyRing: federation.keyRing },
    appServices,
    appServiceQueries: new AppServiceQueries(appServices, logFor('http')),
  };

  typing.subscribe(federation.sender.relayTyping);
  const federationDeps = {
    serverName: config.server_name,
    storage,
    ...federation,
    writer,
    signingKey,
    media,
    inbound: {
      typing,
      notifier,
      log: logFor('federation'),
      presenceEnabled: config.presence.enabled,
      remoteDevices,
      aclAllows: async (roomId: string, origin: string) => {
        const head = await writer.head(roomId);
        return !head || aclAllows(head, origin);
      },
      ingestPdus: (origin: string, pdus: JsonObject[]) =>
        ingestRemotePdus(
          {
            storage,
            writer,
            keyRing: federation.keyRing,
            client: federation.client,
            log: logFor('federation'),
          },
          origin,
          pdus,
        ),
    },
  };

  const apps: FastifyInstance[] = [];
  const urls: string[] = [];
  try {
    for (const listener of config.listeners) {
      const resources = listenerResources(listener);
      const app = createHttpApp({
        logger: logFor('http'),
        maxJsonBodySize: config.max_json_body_size,
        trustProxy: listener.x_forwarded,
        https: listener.tls ? tlsFiles : undefined,
      });
      if (listener.type === 'http') instrument?.http(app);
      healthRoutes(app, storage);
      // enable_metrics puts metrics on client listeners (and those naming `metrics`), never on federation-only ones.
      const metricsHere =
        listener.type === 'metrics' ||
        (config.enable_metrics && (resources.has('client') || resources.has('metrics')));
      if (metrics && metricsHere) metricsRoutes(app, metrics);
      // A metrics listener serves only metrics and health.
      if (listener.type === 'http') {
        if (resources.has('client')) {
          registerClientRoutes(app, deps);
          serverWellKnownRoutes(app, config);
        }
        if (resources.has('federation')) {
          registerFederationRoutes(app, { ...federationDeps, legacyMedia: !resources.has('client') });
        } else if (resources.has('keys')) keyRoutes(app, federationDeps);
      }
      apps.push(app);
      for (const host of listener.bind_addresses) {
        try {
          await app.listen({ port: listener.port, host });
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          const why =
            code === 'EADDRINUSE'
              ? 'address already in use'
              : code === 'EACCES'
                ? 'permission denied'
                : String(code);
          throw new StartupError(`cannot listen on ${host}:${listener.port}: ${why}`);
        }
        const addr = app.server.address();
        if (addr && typeof addr === 'object') {
          const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
          urls.push(`${listener.tls ? 'https' : 'http'}://${h}:${addr.port}`);
        }
      }
    }
    await federation.sender.start();
    await appServiceSender.start();
  } catch (err) {
    await appServiceSender.close();
    await federation.sender.close();
    federation.client.close();
    await Promise.allSettled(apps.map((a) => a.close()));
    await storage.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const grace = new Promise<void>((resolve) => setTimeout(resolve, config.shutdown_grace_ms).unref());
      // Transactions in flight may finish within the grace period; the rest stay queued for the next start.
      const senderClosed = federation.sender.close();
      const appServicesClosed = appServiceSender.close();
      const closed = Promise.allSettled(apps.map((a) => a.close()));
      // Long-polling syncs answer at once instead of holding the shutdown.
      notifier.wakeAll();
      typing.close();
      const mediaJobs = media.close();
      // Once no request is in flight, sockets that are idle or never sent a request need not hold the shutdown.
      await Promise.race([closed, grace, Promise.all(apps.map((a) => whenIdle(a)))]);
      for (const a of apps) a.server.closeAllConnections();
      await Promise.race([closed, grace]);
      await Promise.race([senderClosed, grace]);
      await Promise.race([appServicesClosed, grace]);
      federation.client.close();
      await deps.writer.drain();
      await pushSender.close();
      await mediaJobs;
      await damage.flush();
      await storage.close();
    })();
    return closing;
  };

  return {
    config,
    storage,
    signingKey,
    log,
    apps,
    urls,
    typing,
    writer,
    media,
    federation,
    appServices,
    appServiceSender,
    close,
  };
}
