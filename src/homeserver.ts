/** Wires configuration, storage, keys and the HTTP API into a running homeserver. */
import { accessSync, constants, mkdirSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Authenticator } from './api/auth.js';
import { registerClientRoutes } from './api/routes.js';
import { RateLimiter } from './api/ratelimit.js';
import { createHttpApp, whenIdle } from './api/server.js';
import { Uia } from './api/uia.js';
import type { Config } from './config/schema.js';
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
import { TypingStore } from './sync/typing.js';
import { createLogger, moduleLogger } from './log.js';
import { MediaService } from './media/service.js';
import { healthRoutes, Instrumentation, Metrics, metricsRoutes } from './metrics/index.js';
import { recordDamage } from './storage/damage.js';
import { openStorage, type Storage } from './storage/db.js';

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
  /** Bound addresses as `http://host:port`, one per listener. */
  urls: string[];
  /** Who is typing where (in memory). */
  typing: TypingStore;
  media: MediaService;
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

export async function startHomeserver(config: Config, opts: { logger?: Logger } = {}): Promise<Homeserver> {
  const log = opts.logger ?? createLogger(config.log_level);
  ensureWritableDir(config.media_store_path, 'media store');
  const signingKey = loadOrCreateSigningKey(config.signing_key_path);
  const storage = await openStorage(config.database);
  const metricsOn = config.enable_metrics || config.listeners.some((l) => l.type === 'metrics');
  const metrics = metricsOn ? new Metrics() : undefined;
  const instrument = metrics ? new Instrumentation(metrics) : undefined;
  if (instrument) storage.db = storage.db.withPlugin(instrument.queryTimer());

  const auth = new Authenticator(storage);
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
  writer.onCommit((batch) => {
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
    sync: new SyncService({
      storage,
      reader,
      notifier,
      typing,
      presenceEnabled: config.presence.enabled,
      visible: (userId, events) => filterVisible({ reader, db: storage.db }, userId, events),
    }),
    typing,
    media,
  };

  const apps: FastifyInstance[] = [];
  const urls: string[] = [];
  try {
    for (const listener of config.listeners) {
      const app = createHttpApp({
        logger: logFor('http'),
        maxJsonBodySize: config.max_json_body_size,
        trustProxy: listener.x_forwarded,
      });
      if (listener.type === 'http') instrument?.http(app);
      healthRoutes(app, storage);
      if (metrics && (listener.type === 'metrics' || config.enable_metrics)) metricsRoutes(app, metrics);
      // A metrics listener serves only metrics and health.
      if (listener.type === 'http') registerClientRoutes(app, deps);
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
          urls.push(`http://${h}:${addr.port}`);
        }
      }
    }
  } catch (err) {
    await Promise.allSettled(apps.map((a) => a.close()));
    await storage.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const grace = new Promise<void>((resolve) => setTimeout(resolve, config.shutdown_grace_ms).unref());
      const closed = Promise.allSettled(apps.map((a) => a.close()));
      // Long-polling syncs answer at once instead of holding the shutdown.
      notifier.wakeAll();
      typing.close();
      const mediaJobs = media.close();
      // Once no request is in flight, sockets that are idle or never sent a request need not hold the shutdown.
      await Promise.race([closed, grace, Promise.all(apps.map((a) => whenIdle(a)))]);
      for (const a of apps) a.server.closeAllConnections();
      await Promise.race([closed, grace]);
      await deps.writer.drain();
      await pushSender.close();
      await mediaJobs;
      await damage.flush();
      await storage.close();
    })();
    return closing;
  };

  return { config, storage, signingKey, log, apps, urls, typing, media, close };
}
