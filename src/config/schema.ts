/** The homeserver.yaml schema. Key names follow Synapse's where Synapse has the same setting. */
import { z } from 'zod';

const RateLimit = z
  .object({
    per_second: z.number().positive(),
    burst_count: z.number().int().positive(),
  })
  .strict();

const LogLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

export const ListenerSchema = z
  .object({
    port: z.number().int().min(0).max(65535),
    bind_addresses: z.array(z.string().min(1)).min(1).default(['127.0.0.1']),
    type: z.enum(['http', 'metrics']).default('http'),
    x_forwarded: z.boolean().default(false),
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
    /** Per-module levels overriding log_level: http, rooms, integrity, media, push. */
    log_levels: z
      .partialRecord(z.enum(['http', 'rooms', 'integrity', 'media', 'push']), LogLevel)
      .default({}),
    enable_registration: z.boolean().default(false),
    registration_requires_token: z.boolean().default(false),
    registration_shared_secret: z.string().min(1).optional(),
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
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
