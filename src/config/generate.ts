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
  /** Adds a TLS federation listener on this port. */
  federationPort?: number;
  /** The listener's certificate and key (default: self-signed files in the data dir, see tlsPaths). */
  tlsCertificatePath?: string;
  tlsPrivateKeyPath?: string;
}

const fileStem = (serverName: string): string => serverName.replace(/[^A-Za-z0-9.-]/g, '_');

/** Where the federation listener's certificate and key are, given or in the data dir. */
export function tlsPaths(opts: GenerateOptions): { cert: string; key: string } {
  const dataDir = resolve(opts.dataDir);
  return {
    cert: opts.tlsCertificatePath
      ? resolve(opts.tlsCertificatePath)
      : join(dataDir, `${fileStem(opts.serverName)}.tls.crt`),
    key: opts.tlsPrivateKeyPath
      ? resolve(opts.tlsPrivateKeyPath)
      : join(dataDir, `${fileStem(opts.serverName)}.tls.key`),
  };
}

function federationListener(opts: GenerateOptions): string {
  if (opts.federationPort === undefined) return '';
  return `
  # The server-server (federation) API and the key API, over TLS: other servers connect here (8448 by default,
  # or the port in server_name, or what /.well-known/matrix/server delegates to).
  - port: ${opts.federationPort}
    bind_addresses: [${q(opts.bindAddress ?? '127.0.0.1')}]
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [federation]`;
}

function tlsBlock(opts: GenerateOptions): string {
  if (opts.federationPort === undefined)
    return `# PEM certificate (chain) and key of listeners with tls: true.
# tls_certificate_path: "/path/to/fullchain.pem"
# tls_private_key_path: "/path/to/privkey.pem"`;
  const { cert, key } = tlsPaths(opts);
  const selfSigned = !opts.tlsCertificatePath;
  return `# PEM certificate (chain) and key of listeners with tls: true.${
    selfSigned
      ? `
# generate-config wrote a self-signed certificate here. Other servers verify certificates, so for real federation
# replace it with one from a public CA (or terminate TLS in a reverse proxy and drop tls: true).`
      : ''
  }
tls_certificate_path: ${q(cert)}
tls_private_key_path: ${q(key)}`;
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

# HTTP listeners. type is http or metrics (Prometheus only). What an http listener serves is listed in resources
# (Synapse's names): client (client-server and admin API, media, /.well-known), federation (server-server and key
# API), keys (key API only), metrics. A listener without resources serves client. tls: true serves HTTPS with
# tls_certificate_path and tls_private_key_path.
listeners:
  - port: ${port}
    bind_addresses: [${q(opts.bindAddress ?? '127.0.0.1')}]
    type: http
    # Trust X-Forwarded-For from a reverse proxy.
    x_forwarded: false
    resources:
      - names: [client]${federationListener(opts)}

${tlsBlock(opts)}

# Storage: engine sqlite (path to the database file) or postgres (url).
${databaseBlock(opts.database, dataDir)}

# The server's ed25519 signing key, generated on first start (Synapse's file format).
signing_key_path: ${q(join(dataDir, `${fileStem(opts.serverName)}.signing.key`))}

# Where uploaded media is kept.
media_store_path: ${q(join(dataDir, 'media_store'))}

# trace, debug, info, warn, error, fatal or silent.
log_level: info
# Per-module levels (http, rooms, integrity, media, push, federation), e.g. {http: warn, integrity: debug}.
log_levels: {}

# Open registration over HTTP. Off by default: create accounts with \`hearth register-user\`.
enable_registration: ${opts.enableRegistration ? 'true' : 'false'}
# Require a registration token (m.login.registration_token) to register.
registration_requires_token: false
# Shared secret for /_synapse/admin/v1/register (and register_new_matrix_user style tools).
registration_shared_secret: ${q(secret)}
# Guest accounts: POST /register?kind=guest hands out a token for a guest account, which may only read and join
# rooms whose m.room.guest_access is can_join (and a few account and encryption endpoints). Off: 403 M_FORBIDDEN.
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

# Serve Prometheus metrics on the client listeners at /_hearth/metrics and /_synapse/metrics.
enable_metrics: false

# --- Federation ---
# Check the TLS certificates of other servers. Turn off only for tests and closed networks.
federation_verify_certificates: true
# PEM files of the certificate authorities to trust for federation instead of the system's.
# federation_custom_ca_list: ["/path/to/ca.pem"]
# Federate only with these servers (both ways); unset federates with everyone.
# federation_domain_whitelist: ["example.com", "example.org"]
# Outbound requests never connect to these addresses (checked after DNS resolution) unless they are also in
# ip_range_whitelist. The default (Synapse's) refuses private, loopback, link-local and multicast ranges.
# ip_range_blacklist: ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", ...]
ip_range_whitelist: []
# The trusted servers to download other servers' signing keys from (notaries), asked before the servers themselves.
#
# Normally the connection to a key server is validated by its TLS certificate. verify_keys adds a check that its
# answers are signed by one of the given keys, e.g.
#   - server_name: "my_trusted_server.example.com"
#     verify_keys:
#       "ed25519:auto": "abcdefghijklmnopqrstuvwxyzabcdefghijklmopqr"
#
# matrix.org is long-lived, stable and trusted, which makes it a good choice for many admins, but some may wish to
# use another server. Hearth logs a warning at start while matrix.org is listed; to keep it and silence the warning,
# set suppress_key_server_warning: true. An empty list fetches keys from each server directly.
trusted_key_servers:
  - server_name: "matrix.org"
suppress_key_server_warning: false
# Serve /.well-known/matrix/server on the client listeners, delegating federation to port 443 of server_name (or
# its explicit port): for a reverse proxy on 443 in front of the federation listener.
serve_server_wellknown: false
# How long the keys published at /_matrix/key/v2/server are valid (valid_until_ts).
key_refresh_interval: "1d"
# Keys this server signed with before, published as old_verify_keys: {"ed25519:id": {key: "...", expired_ts: 0}}
old_signing_keys: {}
`;
}
