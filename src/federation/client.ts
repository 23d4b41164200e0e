/**
 * The outbound side of federation: HTTPS requests to other servers, found by server discovery, signed with the
 * X-Matrix header, over TLS checked as the spec says (SNI and certificate for the server's or delegated host name,
 * none for IP literals), and never to an address that ip_range_blacklist refuses. The address check is made in the
 * socket's own DNS lookup, so the address checked is the address connected to.
 */
import { lookup as dnsLookup, resolveSrv as dnsResolveSrv } from 'node:dns/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { SigningKey } from '../keys/signing-key.js';
import { HEARTH_VERSION } from '../util/version.js';
import type { AddressPolicy } from './ip-ranges.js';
import {
  ServerResolver,
  type Dns,
  type ResolvedServer,
  type Target,
  type WellKnownAnswer,
} from './resolver.js';
import { signRequest } from './x-matrix.js';

/** A failed outbound request: no answer (status undefined) or a non-2xx answer with its body. */
export class FederationError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = 'FederationError';
  }

  /** The Matrix errcode of the answer, if it had one. */
  get errcode(): string | undefined {
    const b = this.body as { errcode?: unknown } | undefined;
    return typeof b?.errcode === 'string' ? b.errcode : undefined;
  }
}

/** The destination is not in federation_domain_whitelist. */
export class FederationDeniedError extends FederationError {
  constructor(destination: string) {
    super(`federation with ${destination} is not allowed by federation_domain_whitelist`);
    this.name = 'FederationDeniedError';
  }
}

/** The answer's body is larger than the request's maxBytes. */
export class ResponseTooLargeError extends FederationError {
  constructor(
    message: string,
    status: number | undefined,
    readonly limit: number,
  ) {
    super(message, status);
    this.name = 'ResponseTooLargeError';
  }
}

/** Every address of the destination is refused by ip_range_blacklist. */
export class BlockedAddressError extends FederationError {
  readonly code = 'ERR_HEARTH_BLOCKED_ADDRESS';
  constructor(host: string) {
    super(`${host} resolves only to addresses refused by ip_range_blacklist`);
    this.name = 'BlockedAddressError';
  }
}

export interface FederationClientOptions {
  serverName: string;
  signingKey: SigningKey;
  /** federation_verify_certificates */
  verifyCertificates: boolean;
  /** PEM certificates trusted instead of the system's (federation_custom_ca_list, read). */
  ca?: string[];
  addressPolicy: AddressPolicy;
  /** federation_domain_whitelist: null or undefined allows every server. */
  domainWhitelist?: readonly string[] | null;
  dns?: Dns;
  /** Milliseconds a request may stay silent before it fails. */
  timeoutMs?: number;
}

export interface RequestOptions {
  query?: Record<string, string | number | readonly string[]>;
  /** A JSON body (objects for PUT and POST). */
  body?: unknown;
  /** Send the X-Matrix Authorization header (default true; /_matrix/key/v2/server needs none). */
  signed?: boolean;
  /** Largest response body accepted, in bytes. */
  maxBytes?: number;
}

/** An answer as bytes, whatever its status (media downloads). */
export interface RawFederationResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface FederationResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: unknown;
}

const DEFAULT_MAX_BYTES = 50 * 1024 * 1024;
const WELL_KNOWN_MAX_BYTES = 50 * 1024;
const WELL_KNOWN_MAX_REDIRECTS = 5;

/** Node's resolver: every A/AAAA address, and SRV records (none on NXDOMAIN or no data). */
export const systemDns: Dns = {
  lookup: (host) => dnsLookup(host, { all: true, verbatim: true }),
  resolveSrv: async (name) => {
    try {
      return await dnsResolveSrv(name);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
      throw err;
    }
  },
};

function queryString(query: RequestOptions['query']): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (Array.isArray(v)) for (const item of v as readonly string[]) params.append(k, item);
    else params.append(k, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** `max-age` from a Cache-Control header in milliseconds (0 for no-store/no-cache), or undefined. */
export function cacheControlMaxAgeMs(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (!value) return undefined;
  if (/\bno-(store|cache)\b/i.test(value)) return 0;
  const m = /\bmax-age\s*=\s*"?([0-9]+)"?/i.exec(value);
  return m ? Number(m[1]) * 1000 : undefined;
}

interface RawRequest {
  target: Target;
  tlsName: string;
  hostHeader: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  payload?: Buffer;
  maxBytes: number;
}

type RawResponse = RawFederationResponse;

export class FederationClient {
  readonly serverName: string;
  readonly resolver: ServerResolver;
  readonly #opts: FederationClientOptions;
  readonly #dns: Dns;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 32, timeout: 60_000 });
  readonly #timeoutMs: number;

  constructor(opts: FederationClientOptions) {
    this.#opts = opts;
    this.serverName = opts.serverName;
    this.#dns = opts.dns ?? systemDns;
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    this.resolver = new ServerResolver({
      dns: this.#dns,
      fetchWellKnown: (host) => this.fetchWellKnown(host),
    });
  }

  /** Whether federation_domain_whitelist allows this server (both directions use it). */
  allowsServer(serverName: string): boolean {
    const list = this.#opts.domainWhitelist;
    return !list || list.includes(serverName);
  }

  /**
   * A request to another server's federation or key API: `path` starts with `/_matrix/` and is already
   * percent-encoded. Resolves with the JSON of a 2xx answer; rejects with FederationError otherwise.
   */
  async request(
    destination: string,
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<FederationResponse> {
    const res = await this.#exchange(destination, method, path, opts);
    let body: unknown;
    try {
      body = res.body.length ? JSON.parse(res.body.toString('utf8')) : undefined;
    } catch {
      throw new FederationError(
        `${destination} answered ${method} ${path} with a body that is not JSON`,
        res.status,
      );
    }
    if (res.status < 200 || res.status >= 300)
      throw new FederationError(
        `${destination} answered ${method} ${path} with ${res.status}`,
        res.status,
        body,
      );
    return { status: res.status, headers: res.headers, body };
  }

  /**
   * A GET to another server whose answer is returned as bytes, whatever its status (media downloads); rejects only
   * when there is no answer, or with ResponseTooLargeError past `maxBytes`.
   */
  getRaw(destination: string, path: string, opts: RequestOptions = {}): Promise<RawFederationResponse> {
    return this.#exchange(destination, 'GET', path, opts, '*/*');
  }

  /**
   * An unsigned GET of an https URL that is not a federation endpoint (the `Location` of a media part), following up
   * to 5 redirects, through the same address checks. The answer is returned as bytes, whatever its status.
   */
  async getUrl(url: string, maxBytes: number): Promise<RawFederationResponse> {
    let current = new URL(url);
    for (let hops = 0; ; hops++) {
      if (current.protocol !== 'https:') throw new FederationError(`refusing a ${current.protocol} URL`);
      const host = current.hostname.replace(/^\[(.*)\]$/, '$1');
      const res = await this.#send({
        target: { host, port: current.port ? Number(current.port) : 443 },
        tlsName: host,
        hostHeader: current.host,
        method: 'GET',
        path: current.pathname + current.search,
        headers: { 'user-agent': `Hearth/${HEARTH_VERSION}`, accept: '*/*' },
        maxBytes,
      });
      if (res.status >= 300 && res.status < 400 && res.headers.location) {
        if (hops >= WELL_KNOWN_MAX_REDIRECTS) throw new FederationError('too many redirects');
        current = new URL(res.headers.location, current);
        continue;
      }
      return res;
    }
  }

  /** Signs (unless opts.signed is false), resolves and sends a request; the answer as bytes. */
  async #exchange(
    destination: string,
    method: string,
    path: string,
    opts: RequestOptions,
    accept = 'application/json',
  ): Promise<RawResponse> {
    if (!this.allowsServer(destination)) throw new FederationDeniedError(destination);
    const uri = path + queryString(opts.query);
    const headers: Record<string, string> = {
      'user-agent': `Hearth/${HEARTH_VERSION}`,
      accept,
    };
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.body), 'utf8');
      headers['content-type'] = 'application/json';
    }
    if (opts.signed !== false) {
      const { keyId, seed } = this.#opts.signingKey;
      headers['authorization'] = signRequest(
        { method, uri, origin: this.serverName, destination, content: opts.body },
        keyId,
        seed,
      );
    }
    const resolved = await this.resolver.resolve(destination).catch((err: Error) => {
      throw new FederationError(`cannot resolve ${destination}: ${err.message}`);
    });
    return this.#tryTargets(resolved, (target) =>
      this.#send({
        target,
        tlsName: resolved.tlsName,
        hostHeader: resolved.hostHeader,
        method,
        path: uri,
        headers,
        payload,
        maxBytes: opts.maxBytes ?? DEFAULT_MAX_BYTES,
      }),
    );
  }

  get(destination: string, path: string, opts?: RequestOptions): Promise<FederationResponse> {
    return this.request(destination, 'GET', path, opts);
  }

  post(destination: string, path: string, body: unknown, opts?: RequestOptions): Promise<FederationResponse> {
    return this.request(destination, 'POST', path, { ...opts, body });
  }

  put(destination: string, path: string, body: unknown, opts?: RequestOptions): Promise<FederationResponse> {
    return this.request(destination, 'PUT', path, { ...opts, body });
  }

  /** `https://<hostname>/.well-known/matrix/server` (used by discovery). */
  fetchWellKnown(hostname: string): Promise<WellKnownAnswer> {
    return this.fetchWellKnownUrl(`https://${hostname}/.well-known/matrix/server`);
  }

  /** Fetches a well-known document, following up to 5 redirects, and returns its `m.server`. */
  async fetchWellKnownUrl(url: string): Promise<WellKnownAnswer> {
    let current = new URL(url);
    for (let hops = 0; ; hops++) {
      if (current.protocol !== 'https:')
        throw new FederationError(`well-known redirected to ${current.protocol}`);
      const host = current.hostname.replace(/^\[(.*)\]$/, '$1');
      const res = await this.#send({
        target: { host, port: current.port ? Number(current.port) : 443 },
        tlsName: host,
        hostHeader: current.host,
        method: 'GET',
        path: current.pathname + current.search,
        headers: { 'user-agent': `Hearth/${HEARTH_VERSION}`, accept: 'application/json' },
        maxBytes: WELL_KNOWN_MAX_BYTES,
      });
      if (res.status >= 300 && res.status < 400 && res.headers.location) {
        if (hops >= WELL_KNOWN_MAX_REDIRECTS) throw new FederationError('too many well-known redirects');
        current = new URL(res.headers.location, current);
        continue;
      }
      if (res.status !== 200) throw new FederationError(`well-known answered ${res.status}`, res.status);
      let json: unknown;
      try {
        json = JSON.parse(res.body.toString('utf8'));
      } catch {
        throw new FederationError('well-known is not JSON');
      }
      const server = (json as Record<string, unknown> | null)?.['m.server'];
      if (typeof json !== 'object' || json === null || typeof server !== 'string')
        throw new FederationError('well-known has no m.server');
      return { server, maxAgeMs: cacheControlMaxAgeMs(res.headers['cache-control']) };
    }
  }

  close(): void {
    this.#agent.destroy();
  }

  async #tryTargets(
    resolved: ResolvedServer,
    send: (t: Target) => Promise<RawResponse>,
  ): Promise<RawResponse> {
    let last: unknown;
    for (const target of resolved.targets) {
      try {
        return await send(target);
      } catch (err) {
        last = err;
      }
    }
    if (last instanceof FederationError) throw last;
    throw new FederationError(
      `cannot reach ${resolved.hostHeader}: ${(last as Error | undefined)?.message ?? 'no target'}`,
    );
  }

  /** Resolves a host name to the addresses ip_range_blacklist allows; fails when there are none. */
  readonly #lookup: LookupFunction = (hostname, options, callback) => {
    this.#dns.lookup(hostname).then(
      (all) => {
        const family = options.family === 4 || options.family === 6 ? options.family : 0;
        const allowed = all.filter(
          (a) => (!family || a.family === family) && this.#opts.addressPolicy.allows(a.address),
        );
        const first = allowed[0];
        if (!first) return callback(new BlockedAddressError(hostname), '', 0);
        if (options.all) return callback(null, allowed);
        callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };

  #send(req: RawRequest): Promise<RawResponse> {
    if (isIP(req.target.host) && !this.#opts.addressPolicy.allows(req.target.host))
      return Promise.reject(new BlockedAddressError(req.target.host));
    const verify = this.#opts.verifyCertificates;
    const tlsName = req.tlsName;
    return new Promise<RawResponse>((resolve, reject) => {
      const r = httpsRequest({
        agent: this.#agent,
        host: req.target.host,
        port: req.target.port,
        method: req.method,
        path: req.path,
        headers: {
          ...req.headers,
          host: req.hostHeader,
          ...(req.payload ? { 'content-length': String(req.payload.length) } : {}),
        },
        // SNI names the expected certificate, except for IP addresses (RFC 6066 forbids them in SNI).
        servername: isIP(tlsName) ? '' : tlsName,
        rejectUnauthorized: verify,
        ca: this.#opts.ca,
        checkServerIdentity: (_host: string, cert: PeerCertificate) =>
          verify ? checkServerIdentity(tlsName, cert) : undefined,
        lookup: this.#lookup,
        timeout: this.#timeoutMs,
      });
      r.on('timeout', () => r.destroy(new FederationError(`request to ${req.hostHeader} timed out`)));
      r.on('error', (err) =>
        reject(
          err instanceof FederationError
            ? err
            : new FederationError(`cannot reach ${req.hostHeader}: ${err.message}`),
        ),
      );
      r.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > req.maxBytes) {
            res.destroy();
            reject(
              new ResponseTooLargeError(
                `response from ${req.hostHeader} exceeds ${req.maxBytes} bytes`,
                res.statusCode,
                req.maxBytes,
              ),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (err) =>
          reject(new FederationError(`reading from ${req.hostHeader}: ${err.message}`)),
        );
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      });
      r.end(req.payload);
    });
  }
}
