/** The homeserver.yaml schema. Key names follow Synapse's where Synapse has the same setting. */
import { isIP } from 'node:net';
import { z } from 'zod';

const RateLimit = z
  .object({
    per_second: z.number().positive(),
    burst_count: z.number().int().positive(),
  })
  .strict();

const LogLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

/**
 * What an http listener serves (Synapse's resource names). `client` is the client-server and admin API (with media
 * and /.well-known); `federation` is the server-server API and the key API; `keys` is the key API alone; `metrics`
 * puts Prometheus metrics on the listener when enable_metrics is on; `health` is always served.
 */
export const ListenerResourceName = z.enum(['client', 'federation', 'keys', 'metrics', 'health']);
export type ListenerResourceName = z.infer<typeof ListenerResourceName>;

export const ListenerSchema = z
  .object({
    port: z.number().int().min(0).max(65535),
    bind_addresses: z.array(z.string().min(1)).min(1).default(['127.0.0.1']),
    type: z.enum(['http', 'metrics']).default('http'),
    x_forwarded: z.boolean().default(false),
    /** Serve HTTPS with tls_certificate_path / tls_private_key_path. */
    tls: z.boolean().optional(),
    /** Without resources an http listener serves `client` (what every listener served before federation). */
    resources: z
      .array(
        z
          .object({
            names: z.array(ListenerResourceName).min(1),
            /** Accepted for Synapse configs; Hearth does not compress responses. */
            compress: z.boolean().optional(),
          })
          .strict(),
      )
      .min(1)
      .optional(),
  })
  .strict();

export type Listener = z.infer<typeof ListenerSchema>;

/** The resources a listener serves: its `resources` names, or `client` for an http listener without any. */
export function listenerResources(listener: Listener): Set<ListenerResourceName> {
  if (listener.type === 'metrics') return new Set(['metrics', 'health']);
  if (!listener.resources) return new Set(['client']);
  return new Set(listener.resources.flatMap((r) => r.names));
}

/**
 * Synapse's default ip_range_blacklist: private, loopback, link-local, carrier-grade NAT, documentation and multicast
 * ranges. 0.0.0.0 and :: are always refused on top of the configured list.
 */
export const DEFAULT_IP_RANGE_BLACKLIST: readonly string[] = [
  '127.0.0.0/8',
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10',
  '192.0.0.0/24',
  '169.254.0.0/16',
  '192.88.99.0/24',
  '198.18.0.0/15',
  '192.0.2.0/24',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4',
  '::1/128',
  'fe80::/10',
  'fc00::/7',
  '2001:db8::/32',
  'ff00::/8',
  'fec0::/10',
];

/** An IPv4 or IPv6 address, with an optional /prefix. */
export function isIpRange(s: string): boolean {
  const [addr, prefix, ...rest] = s.split('/');
  const family = isIP(addr ?? '');
  if (!family || rest.length) return false;
  if (prefix === undefined) return true;
  return /^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

const IpRange = z.string().refine(isIpRange, 'an IP address or CIDR range, e.g. 10.0.0.0/8 or fc00::/7');

const DURATION_UNITS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
  y: 31_536_000_000,
};

/** Synapse's durations: a number of milliseconds, or a number followed by s, m, h, d, w or y ("1d"). */
const Duration = z.union([
  z.number().int().positive(),
  z
    .string()
    .regex(/^[0-9]+[smhdwy]?$/, 'a duration such as 1d, 12h or a number of milliseconds')
    .transform((s) => {
      const unit = /[smhdwy]$/.test(s) ? s.slice(-1) : '';
      return Number(unit ? s.slice(0, -1) : s) * (unit ? (DURATION_UNITS[unit] as number) : 1);
    }),
]);

const TrustedKeyServer = z
  .object({
    server_name: z.string().min(1),
    /** key id → unpadded base64 ed25519 key: notary answers must carry a signature by one of them. */
    verify_keys: z.record(z.string().regex(/^ed25519:[A-Za-z0-9_]+$/), z.string().min(1)).optional(),
    /** Without verify_keys, rely on TLS alone even when federation_verify_certificates is off. */
    accept_keys_insecurely: z.boolean().optional(),
  })
  .strict();

export const DatabaseSchema = z
  .object({
    engine: z.enum(['sqlite', 'postgres']),
    path: z.string().min(1).optional(),
    url: z.string().min(1).optional(),
    max_connections: z.number().int().positive().default(10),
  })
  .strict()
  .superRefine((db, ctx) => {
    if (db.engine === 'sqlite' && !db.path)
      ctx.addIssue({ code: 'custom', path: ['path'], message: 'required when engine is sqlite' });
    if (db.engine === 'postgres' && !db.url)
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'required when engine is postgres' });
  });

export const ConfigSchema = z
  .object({
    server_name: z
      .string()
      .min(1)
      .regex(/^[A-Za-z0-9.\-[\]:]+$/, 'a server name: a host name with an optional port'),
    public_baseurl: z.url().optional(),
    listeners: z.array(ListenerSchema).min(1),
    database: DatabaseSchema,
    signing_key_path: z.string().min(1),
    media_store_path: z.string().min(1),
    log_level: LogLevel.default('info'),
    /** Per-module levels overriding log_level: http, rooms, integrity, media, push, federation. */
    log_levels: z
      .partialRecord(z.enum(['http', 'rooms', 'integrity', 'media', 'push', 'federation']), LogLevel)
      .default({}),
    enable_registration: z.boolean().default(false),
    registration_requires_token: z.boolean().default(false),
    registration_shared_secret: z.string().min(1).optional(),
    /**
     * Guest accounts (Synapse's name): registration with kind=guest, guests limited to the Guest Access module's
     * endpoints and to rooms whose m.room.guest_access is can_join. Off: kind=guest answers 403 M_FORBIDDEN.
     */
    allow_guest_access: z.boolean().default(false),
    default_room_version: z.string().min(1).default('12'),
    max_request_size: z
      .number()
      .int()
      .positive()
      .default(50 * 1024 * 1024),
    max_json_body_size: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024),
    /** Largest media upload in bytes (Synapse's max_upload_size). */
    max_upload_size: z
      .number()
      .int()
      .positive()
      .default(50 * 1024 * 1024),
    /** Images with more pixels than this are not thumbnailed (decompression bombs). */
    max_image_pixels: z.number().int().positive().default(32_000_000),
    /** Media uploaded while this is on is not served by the legacy unauthenticated /_matrix/media endpoints. */
    enable_authenticated_media: z.boolean().default(true),
    /** Async uploads (/create) a user may have waiting for content, and how long one waits. */
    max_pending_media_uploads: z.number().int().positive().default(5),
    unused_expiration_time_ms: z.number().int().positive().default(86_400_000),
    /** URL previews need outbound HTTP, which Hearth does not make yet: /preview_url answers 404 either way. */
    url_preview_enabled: z.boolean().default(false),
    access_token_lifetime_ms: z.number().int().positive().optional(),
    refresh_token_lifetime_ms: z.number().int().positive().optional(),
    shutdown_grace_ms: z.number().int().nonnegative().default(10_000),
    rate_limiting: z
      .object({
        enabled: z.boolean().default(true),
        login: RateLimit.default({ per_second: 0.17, burst_count: 3 }),
        register: RateLimit.default({ per_second: 0.17, burst_count: 3 }),
        message: RateLimit.default({ per_second: 0.2, burst_count: 10 }),
        media_upload: RateLimit.default({ per_second: 10, burst_count: 50 }),
        joins: RateLimit.default({ per_second: 0.1, burst_count: 10 }),
        invites: RateLimit.default({ per_second: 0.3, burst_count: 10 }),
      })
      .strict()
      .default({
        enabled: true,
        login: { per_second: 0.17, burst_count: 3 },
        register: { per_second: 0.17, burst_count: 3 },
        message: { per_second: 0.2, burst_count: 10 },
        media_upload: { per_second: 10, burst_count: 50 },
        joins: { per_second: 0.1, burst_count: 10 },
        invites: { per_second: 0.3, burst_count: 10 },
      }),
    presence: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .default({ enabled: true }),
    turn_uris: z.array(z.string()).default([]),
    turn_shared_secret: z.string().optional(),
    turn_user_lifetime_ms: z.number().int().positive().default(86_400_000),
    enable_metrics: z.boolean().default(false),

    // Federation (server-server API). Names and defaults as Synapse's.
    /** PEM certificate chain and key of listeners with `tls: true`. */
    tls_certificate_path: z.string().min(1).optional(),
    tls_private_key_path: z.string().min(1).optional(),
    /** Check the TLS certificates of other servers (off only for tests and closed networks). */
    federation_verify_certificates: z.boolean().default(true),
    /** PEM files of the certificate authorities trusted for federation, instead of the system's. */
    federation_custom_ca_list: z.array(z.string().min(1)).optional(),
    /** When set, only these server names may federate with this server (both ways). */
    federation_domain_whitelist: z.array(z.string().min(1)).nullable().optional(),
    /** Addresses outbound requests never connect to (after DNS resolution), unless in ip_range_whitelist. */
    ip_range_blacklist: z.array(IpRange).default([...DEFAULT_IP_RANGE_BLACKLIST]),
    ip_range_whitelist: z.array(IpRange).default([]),
    /** Notary servers asked for other servers' keys (before the servers themselves). */
    trusted_key_servers: z.array(TrustedKeyServer).default([]),
    suppress_key_server_warning: z.boolean().default(false),
    /** Serve /.well-known/matrix/server (delegating to server_name's port, or 443) on client listeners. */
    serve_server_wellknown: z.boolean().default(false),
    /** How long the keys published at /_matrix/key/v2/server stay valid (valid_until_ts); Synapse's 1d. */
    key_refresh_interval: Duration.default(86_400_000),
    /** Keys this server used to sign with: key id → {key, expired_ts}, published as old_verify_keys. */
    old_signing_keys: z
      .record(
        z.string().regex(/^ed25519:[A-Za-z0-9_]+$/),
        z.object({ key: z.string().min(1), expired_ts: z.number().int().nonnegative() }).strict(),
      )
      .default({}),
    /** Application service registration files (Synapse's YAML format), read and validated at start. */
    app_service_config_files: z.array(z.string().min(1)).default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    c.listeners.forEach((l, i) => {
      if (!l.tls) return;
      for (const key of ['tls_certificate_path', 'tls_private_key_path'] as const) {
        if (!c[key])
          ctx.addIssue({ code: 'custom', path: [key], message: `required by listeners[${i}].tls` });
      }
    });
    c.trusted_key_servers.forEach((s, i) => {
      if (!c.federation_verify_certificates && !s.verify_keys && !s.accept_keys_insecurely)
        ctx.addIssue({
          code: 'custom',
          path: ['trusted_key_servers', i, 'verify_keys'],
          message:
            'required while federation_verify_certificates is false (or set accept_keys_insecurely: true)',
        });
    });
  });

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
