/** Writes a complete, commented homeserver.yaml. */
import { randomBytes } from 'node:crypto';
import { isAbsolute, join, resolve } from 'node:path';

export interface GenerateOptions {
  serverName: string;
  dataDir: string;
  port?: number;
  database?: string;
  enableRegistration?: boolean;
  bindAddress?: string;
}

const q = (s: string): string => JSON.stringify(s);

function databaseBlock(database: string | undefined, dataDir: string): string {
  if (database && /^postgres(ql)?:\/\//.test(database)) {
    return `database:\n  engine: postgres\n  url: ${q(database)}\n  # Connection pool size.\n  max_connections: 10`;
  }
  const path = database
    ? isAbsolute(database)
      ? database
      : resolve(database)
    : join(dataDir, 'homeserver.db');
  return `database:\n  engine: sqlite\n  path: ${q(path)}`;
}

export function generateConfig(opts: GenerateOptions): string {
  const dataDir = resolve(opts.dataDir);
  const port = opts.port ?? 8008;
  const secret = randomBytes(32).toString('base64url');
  return `# Hearth homeserver configuration.
# Relative paths are resolved against the directory of this file.

# The domain part of every user id (@alice:${opts.serverName}). It cannot be changed later.
server_name: ${q(opts.serverName)}

# The URL clients use to reach this server (announced in /.well-known/matrix/client).
public_baseurl: ${q(`http://localhost:${port}/`)}

# HTTP listeners. type is http (client and admin API) or metrics (Prometheus only).
listeners:
  - port: ${port}
    bind_addresses: [${q(opts.bindAddress ?? '127.0.0.1')}]
    type: http
    # Trust X-Forwarded-For from a reverse proxy.
    x_forwarded: false

# Storage: engine sqlite (path to the database file) or postgres (url).
${databaseBlock(opts.database, dataDir)}

# The server's ed25519 signing key, generated on first start (Synapse's file format).
signing_key_path: ${q(join(dataDir, `${opts.serverName.replace(/[^A-Za-z0-9.-]/g, '_')}.signing.key`))}

# Where uploaded media is kept.
media_store_path: ${q(join(dataDir, 'media_store'))}

# trace, debug, info, warn, error, fatal or silent.
log_level: info
# Per-module levels (http, rooms, integrity, media, push), e.g. {http: warn, integrity: debug}.
log_levels: {}

# Open registration over HTTP. Off by default: create accounts with \`hearth register-user\`.
enable_registration: ${opts.enableRegistration ? 'true' : 'false'}
# Require a registration token (m.login.registration_token) to register.
registration_requires_token: false
# Shared secret for /_synapse/admin/v1/register (and register_new_matrix_user style tools).
registration_shared_secret: ${q(secret)}
# Guest accounts (kind=guest).
allow_guest_access: false

# Room version for new rooms.
default_room_version: "12"

# Largest request body in bytes (media uploads), and largest JSON body.
max_request_size: 52428800
max_json_body_size: 1048576

# Media: largest upload in bytes, and the largest image (in pixels) that is thumbnailed.
max_upload_size: 52428800
max_image_pixels: 32000000
# Media uploaded while this is true is only served by the authenticated /_matrix/client/v1/media endpoints;
# media uploaded before it was turned on stays available on the legacy /_matrix/media/v3 ones (as Synapse).
enable_authenticated_media: true
# Async uploads (POST /_matrix/media/v1/create): how many a user may have pending, and for how long.
max_pending_media_uploads: 5
unused_expiration_time_ms: 86400000
# URL previews need outbound HTTP, which Hearth does not make yet: /preview_url answers 404 M_UNRECOGNIZED.
url_preview_enabled: false

# Seconds in-flight requests get to finish on shutdown, in milliseconds.
shutdown_grace_ms: 10000

# Per-IP and per-user rate limits (token buckets).
rate_limiting:
  enabled: true
  login:
    per_second: 0.17
    burst_count: 3
  register:
    per_second: 0.17
    burst_count: 3
  message:
    per_second: 0.2
    burst_count: 10
  # Media uploads and /create, per user.
  media_upload:
    per_second: 10
    burst_count: 50
  # Room joins and invites, per user and per IP. Server admins are exempt from every limit.
  joins:
    per_second: 0.1
    burst_count: 10
  invites:
    per_second: 0.3
    burst_count: 10

# Presence (online/offline status) of users sharing a room.
presence:
  enabled: true

# TURN servers for VoIP. With a shared secret, time-limited credentials are handed out as Synapse does.
turn_uris: []
# turn_shared_secret: "..."
turn_user_lifetime_ms: 86400000

# Serve Prometheus metrics on the http listener at /_hearth/metrics and /_synapse/metrics.
enable_metrics: false
`;
}
