/**
 * Server discovery (server-server API "Resolving server names"): from a server name to the addresses to connect to,
 * the Host header to send and the name the TLS certificate must be valid for. DNS and the /.well-known fetch are
 * injected, so the resolution order is tested without a network.
 */
import { parseServerName, formatHostPort } from './server-name.js';

export const DEFAULT_FEDERATION_PORT = 8448;

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

export interface Dns {
  /** A/AAAA (and CNAME) resolution: every address of a host. */
  lookup(host: string): Promise<{ address: string; family: number }[]>;
  /** SRV records, `[]` when there are none. */
  resolveSrv(name: string): Promise<SrvRecord[]>;
}

export interface WellKnownAnswer {
  /** The `m.server` value. */
  server: string;
  /** How long the answer may be cached (from Cache-Control), when the response said. */
  maxAgeMs?: number;
}

/** Fetches `https://<hostname>/.well-known/matrix/server`; throws on any failure or invalid answer. */
export type WellKnownFetcher = (hostname: string) => Promise<WellKnownAnswer>;

export interface Target {
  /** DNS name or IP literal to connect to, and the port. */
  host: string;
  port: number;
}

export interface ResolvedServer {
  /** The `Host` header of requests. */
  hostHeader: string;
  /** The name the certificate must be valid for; sent as SNI unless it is an IP address. */
  tlsName: string;
  /** Where to connect, tried in order. */
  targets: Target[];
}

export class DiscoveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiscoveryError';
  }
}

/** The spec's recommended cache lifetime of a well-known answer without caching headers, and the cap on any. */
export const WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3_600_000;
export const WELL_KNOWN_MAX_CACHE_MS = 48 * 3_600_000;
/** A failed lookup is cached for 2 minutes, doubling with each consecutive failure up to an hour. */
export const WELL_KNOWN_FAILURE_CACHE_MS = 2 * 60_000;
export const WELL_KNOWN_MAX_FAILURE_CACHE_MS = 3_600_000;

interface CachedWellKnown {
  server: string | null;
  expiresAt: number;
  failures: number;
}

/** SRV records in the order to try: by priority, then the heavier first (RFC 2782; no randomness, for stable tests). */
function orderSrv(records: SrvRecord[]): Target[] {
  return records
    .filter((r) => r.name !== '' && r.name !== '.')
    .sort((a, b) => a.priority - b.priority || b.weight - a.weight)
    .map((r) => ({ host: r.name.replace(/\.$/, ''), port: r.port }));
}

export class ServerResolver {
  readonly #dns: Dns;
  readonly #fetchWellKnown: WellKnownFetcher;
  readonly #now: () => number;
  readonly #wellKnown = new Map<string, CachedWellKnown>();
  readonly #inFlight = new Map<string, Promise<string | null>>();

  constructor(opts: { dns: Dns; fetchWellKnown: WellKnownFetcher; now?: () => number }) {
    this.#dns = opts.dns;
    this.#fetchWellKnown = opts.fetchWellKnown;
    this.#now = opts.now ?? Date.now;
  }

  async resolve(serverName: string): Promise<ResolvedServer> {
    const parsed = parseServerName(serverName);
    if (!parsed) throw new DiscoveryError(`invalid server name: ${serverName}`);
    const { host, port } = parsed;
    // 1. An IP literal, with its port or 8448; 2. a DNS name with an explicit port.
    if (parsed.ipVersion || port !== undefined)
      return {
        hostHeader: serverName,
        tlsName: host,
        targets: [{ host, port: port ?? DEFAULT_FEDERATION_PORT }],
      };
    // 3. /.well-known/matrix/server delegation.
    const delegated = await this.wellKnown(host);
    if (delegated !== null) {
      const d = parseServerName(delegated);
      if (d) {
        // 3.1 IP literal, 3.2 explicit port.
        if (d.ipVersion || d.port !== undefined)
          return {
            hostHeader: formatHostPort(d.host, d.port),
            tlsName: d.host,
            targets: [{ host: d.host, port: d.port ?? DEFAULT_FEDERATION_PORT }],
          };
        // 3.3 / 3.4 SRV of the delegated host, 3.5 its address on 8448.
        return { hostHeader: d.host, tlsName: d.host, targets: await this.srvOrDefault(d.host) };
      }
    }
    // 4 / 5: SRV of the server name's host, 6: its address on 8448.
    return { hostHeader: host, tlsName: host, targets: await this.srvOrDefault(host) };
  }

  async srvOrDefault(host: string): Promise<Target[]> {
    for (const service of ['_matrix-fed._tcp', '_matrix._tcp']) {
      const targets = orderSrv(await this.#dns.resolveSrv(`${service}.${host}`).catch(() => []));
      if (targets.length) return targets;
    }
    return [{ host, port: DEFAULT_FEDERATION_PORT }];
  }

  /** The delegated server name from `/.well-known/matrix/server` (cached), or null when there is none. */
  wellKnown(hostname: string): Promise<string | null> {
    const cached = this.#wellKnown.get(hostname);
    const now = this.#now();
    if (cached && cached.expiresAt > now) return Promise.resolve(cached.server);
    const running = this.#inFlight.get(hostname);
    if (running) return running;
    const job = this.#fetchWellKnown(hostname)
      .then((answer) => {
        if (!parseServerName(answer.server)) throw new DiscoveryError(`invalid m.server: ${answer.server}`);
        const ttl = Math.min(
          Math.max(answer.maxAgeMs ?? WELL_KNOWN_DEFAULT_CACHE_MS, 0),
          WELL_KNOWN_MAX_CACHE_MS,
        );
        this.#wellKnown.set(hostname, { server: answer.server, expiresAt: this.#now() + ttl, failures: 0 });
        return answer.server;
      })
      .catch(() => {
        const failures = (cached?.server === null ? cached.failures : 0) + 1;
        const ttl = Math.min(
          WELL_KNOWN_FAILURE_CACHE_MS * 2 ** (failures - 1),
          WELL_KNOWN_MAX_FAILURE_CACHE_MS,
        );
        this.#wellKnown.set(hostname, { server: null, expiresAt: this.#now() + ttl, failures });
        return null;
      })
      .finally(() => this.#inFlight.delete(hostname));
    this.#inFlight.set(hostname, job);
    return job;
  }
}
