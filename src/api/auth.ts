/** Bearer-token authentication of client requests. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { hashToken } from '../accounts/secrets.js';
import { writeGeneration } from '../storage/write-watch.js';
import { findAccessToken, touchDevice, type TokenOwner } from '../storage/devices.js';
import type { Storage } from '../storage/db.js';
import { MatrixError } from './errors.js';
import { appServiceRequester } from './appservice-auth.js';
import type { AppServiceRegistry } from '../appservice/registration.js';

export interface Requester {
  userId: string;
  deviceId: string;
  tokenId: number;
  isAdmin: boolean;
  isGuest: boolean;
  /** Set when the request carries an application service's as_token (identity assertion). */
  appServiceId?: string;
  /** The request used the as_token of an application service with `rate_limited: false`. */
  exemptFromRateLimits?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    requester: Requester | null;
  }
}

const LAST_SEEN_INTERVAL_MS = 60_000;
/** Token owners cached at most this long (a bound for changes made by another process, e.g. the CLI). */
const TOKEN_CACHE_MS = 60_000;
const TOKEN_CACHE_SIZE = 10_000;

/**
 * The access token of a request: the `Authorization: Bearer` header, else the deprecated (Matrix v1.11) but
 * still used `access_token` query parameter. The header wins when both are present. Request logs redact the
 * query parameter (`safeUrl`).
 */
export function bearerToken(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  if (header) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new MatrixError('M_MISSING_TOKEN', 'Authorization header must be "Bearer <token>"');
    return m[1];
  }
  const query = req.query as Record<string, unknown> | undefined;
  const param: unknown = query?.access_token;
  const token: unknown = Array.isArray(param) ? (param as unknown[])[0] : param;
  return typeof token === 'string' && token !== '' ? token : undefined;
}

export class Authenticator {
  #lastSeen = new Map<string, number>();
  /**
   * Token hash → owner, so a request costs no query. Every write that may revoke a token (logout, device deletion,
   * deactivation, locking, admin changes: storage/write-watch.ts) moves the generation and empties it.
   */
  #tokens = new Map<string, { owner: TokenOwner; at: number }>();
  #generation = writeGeneration('auth');

  constructor(
    private readonly storage: Storage,
    readonly appServices?: AppServiceRegistry,
  ) {}

  /**
   * Resolves the token to its user and device; throws the spec's 401 errors. A locked account (Matrix v1.12
   * "Account locking") gets 401 M_USER_LOCKED with soft_logout everywhere but where `allowLocked` (logout).
   */
  async authenticate(req: FastifyRequest, allowLocked = false): Promise<Requester> {
    const token = bearerToken(req);
    if (!token) throw new MatrixError('M_MISSING_TOKEN', 'Missing access token');
    const registry = this.appServices;
    const as = registry?.byToken(token);
    if (registry && as) return appServiceRequester(this.storage.db, registry, as, req);
    const owner = await this.#owner(hashToken(token));
    if (!owner || owner.deactivated) {
      throw new MatrixError('M_UNKNOWN_TOKEN', 'Unrecognised access token', { soft_logout: false });
    }
    if (owner.expiresTs !== null && owner.expiresTs <= Date.now()) {
      // The client holds a refresh token: it may refresh without logging in again.
      throw new MatrixError('M_UNKNOWN_TOKEN', 'Access token has expired', { soft_logout: true });
    }
    if (owner.locked && !allowLocked) throw userLocked();
    this.#recordLastSeen(owner.userId, owner.deviceId, req);
    return {
      userId: owner.userId,
      deviceId: owner.deviceId,
      tokenId: owner.tokenId,
      isAdmin: owner.isAdmin,
      isGuest: owner.isGuest,
    };
  }

  async #owner(hash: string): Promise<TokenOwner | undefined> {
    const generation = writeGeneration('auth');
    if (generation !== this.#generation) {
      this.#tokens.clear();
      this.#generation = generation;
    }
    const now = Date.now();
    const hit = this.#tokens.get(hash);
    if (hit && now - hit.at < TOKEN_CACHE_MS) return hit.owner;
    const owner = await findAccessToken(this.storage.db, hash);
    // A revoking write while the row was read: the row may be stale, do not keep it.
    if (owner && !owner.deactivated && writeGeneration('auth') === generation) {
      if (this.#tokens.size >= TOKEN_CACHE_SIZE) this.#tokens.clear();
      this.#tokens.set(hash, { owner, at: now });
    }
    return owner;
  }

  /** preHandler: the request must carry a valid token. */
  readonly requireUser = async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    req.requester = await this.authenticate(req);
  };

  /** preHandler for POST /logout and /logout/all: a valid token, also of a locked account. */
  readonly requireUserEvenLocked = async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    req.requester = await this.authenticate(req, true);
  };

  /** preHandler: the request must come from a server admin. */
  readonly requireAdmin = async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const r = await this.authenticate(req);
    if (!r.isAdmin) throw new MatrixError('M_FORBIDDEN', 'You are not a server admin');
    req.requester = r;
  };

  /** Forgets cached last-seen times of a user (after logout or deactivation). */
  forget(userId: string): void {
    for (const [hash, t] of this.#tokens) if (t.owner.userId === userId) this.#tokens.delete(hash);
    for (const key of this.#lastSeen.keys()) if (key.startsWith(`${userId}|`)) this.#lastSeen.delete(key);
  }

  #recordLastSeen(userId: string, deviceId: string, req: FastifyRequest): void {
    const key = `${userId}|${deviceId}`;
    const now = Date.now();
    const last = this.#lastSeen.get(key) ?? 0;
    if (now - last < LAST_SEEN_INTERVAL_MS) return;
    if (this.#lastSeen.size > 50_000) this.#lastSeen.clear();
    this.#lastSeen.set(key, now);
    const ua = req.headers['user-agent'] ?? null;
    touchDevice(this.storage.db, userId, deviceId, now, req.ip, ua).catch((err: unknown) =>
      req.log.warn({ err }, 'could not record device last-seen'),
    );
  }
}

/** The answer to a locked account, at login and on every authenticated endpoint but logout (as Synapse's). */
export function userLocked(): MatrixError {
  return new MatrixError('M_USER_LOCKED', 'User account has been locked', { soft_logout: true });
}

/** The authenticated requester of a route guarded by `requireUser`. */
export function requester(req: FastifyRequest): Requester {
  if (!req.requester) throw new MatrixError('M_MISSING_TOKEN', 'Missing access token');
  return req.requester;
}
