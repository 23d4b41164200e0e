/**
 * User-interactive authentication (client-server API "User-Interactive Authentication API").
 * A request needing UIA without a completed flow is answered 401 with the flows, params and session id.
 *
 * As in Synapse, a session remembers the parameters of the operation (the body minus `auth` and secrets): a later
 * request of the session that carries nothing but `auth` is performed with them, one that carries parameters
 * replaces them. A completed session stays valid until it expires, so the client may retry the same request with it
 * (the spec: "servers must return ... the result of the API call if all stages were completed when a client retries
 * a stage"); completed stages are not checked again.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { verifyPassword } from '../accounts/secrets.js';
import type { Storage } from '../storage/db.js';
import { checkRegistrationToken } from '../storage/registration-tokens.js';
import {
  createUiaSession,
  deleteExpiredUiaSessions,
  getUiaSession,
  setUiaCompleted,
  setUiaData,
  setUiaParams,
  type UiaSession,
} from '../storage/uia.js';
import { getUser } from '../storage/users.js';
import { MatrixError } from './errors.js';
import { isJsonObject } from './validate.js';

export type Stage = 'm.login.dummy' | 'm.login.password' | 'm.login.registration_token';

/** A session as an operation sees it: its id and the data the operation attached to it. */
export interface UiaSessionView {
  sessionId: string;
  data: Record<string, string>;
}

export interface UiaRequest {
  req: FastifyRequest;
  /** The `auth` dict of the request body, if any. */
  auth: unknown;
  flows: Stage[][];
  /** The user performing the operation (absent for registration). */
  userId?: string | undefined;
  /** Called before the 401 of an incomplete flow is thrown, e.g. to keep a password hash with the session. */
  beforeChallenge?: (session: UiaSessionView) => Promise<void>;
}

export interface UiaResult extends UiaSessionView {
  /** The operation's parameters: this request's body (minus `auth` and secrets) or, when it has none, the session's. */
  params: Record<string, unknown>;
}

const SESSION_LIFETIME_MS = 30 * 60_000;
/** Body fields never stored with a session: Synapse keeps only a hash of a registration password. */
const SECRET_FIELDS: ReadonlySet<string> = new Set(['auth', 'password', 'new_password']);

/**
 * Parameters larger than this (serialized) are used for the request but not kept with the session: sessions are
 * made by unauthenticated requests (registration), which must not store arbitrary amounts of data.
 */
const MAX_STORED_PARAMS = 64 * 1024;

/** The body of the request without `auth` and secrets. */
function ownParams(body: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!isJsonObject(body)) return out;
  for (const [k, v] of Object.entries(body)) if (!SECRET_FIELDS.has(k)) out[k] = v;
  return out;
}

function storable(params: Record<string, unknown>): Record<string, unknown> {
  return JSON.stringify(params).length <= MAX_STORED_PARAMS ? params : {};
}

export class Uia {
  constructor(
    private readonly storage: Storage,
    private readonly serverName: string,
  ) {}

  /**
   * Returns when a flow is complete (now or earlier in the session); otherwise throws the 401 UIA response (with the
   * errcode of a failed stage).
   */
  async require(r: UiaRequest): Promise<UiaResult> {
    // The concrete path (not the route pattern): a session started to delete one device cannot delete another.
    const requestKey = `${r.req.method} ${r.req.url.split('?')[0] ?? ''}`;
    const db = this.storage.db;
    const auth = isJsonObject(r.auth) ? r.auth : undefined;
    const sessionId = typeof auth?.session === 'string' ? auth.session : undefined;
    let session = sessionId ? await this.#live(sessionId) : undefined;
    if (sessionId && !session) throw new MatrixError('M_UNKNOWN', 'Unknown or expired UIA session', {}, 400);
    let params = ownParams(r.req.body);
    let completed: string[] = [];
    let data: Record<string, string> = session?.data ?? {};
    if (session) {
      if (session.requestKey !== requestKey || (session.userId ?? undefined) !== r.userId) {
        throw new MatrixError('M_FORBIDDEN', 'This UIA session was started for another request');
      }
      completed = session.completed;
      if (Object.keys(params).length === 0) params = session.params;
      else if (JSON.stringify(params) !== JSON.stringify(session.params)) {
        await setUiaParams(db, session.sessionId, storable(params));
        session = { ...session, params: storable(params) };
      }
    }
    const isComplete = (stages: readonly string[]) => r.flows.some((f) => f.every((s) => stages.includes(s)));

    // A failed stage is answered like an incomplete flow (401 with flows and session), plus its errcode.
    let failure: MatrixError | undefined;
    if (auth && typeof auth.type === 'string' && !completed.includes(auth.type)) {
      const stage = auth.type;
      if (!r.flows.some((f) => (f as string[]).includes(stage))) {
        throw new MatrixError('M_UNRECOGNIZED', `Authentication type ${stage} is not offered here`, {}, 400);
      }
      try {
        await this.#checkStage(stage as Stage, auth, r);
      } catch (err) {
        if (!(err instanceof MatrixError) || (err.status !== 401 && err.status !== 403)) throw err;
        failure = err;
      }
      if (!failure) {
        completed = [...completed, stage];
        // Registration counts the use of its token once the account exists, possibly in a later request.
        if (stage === 'm.login.registration_token' && typeof auth.token === 'string')
          data = { ...data, registration_token: auth.token };
      }
    }

    if (!session) {
      session = {
        sessionId: randomBytes(12).toString('base64url'),
        createdTs: Date.now(),
        completed,
        requestKey,
        userId: r.userId ?? null,
        params: storable(params),
        data,
      };
      await deleteExpiredUiaSessions(db, Date.now() - SESSION_LIFETIME_MS);
      await createUiaSession(db, session);
    } else {
      if (completed.length !== session.completed.length)
        await setUiaCompleted(db, session.sessionId, completed);
      if (data !== session.data) await setUiaData(db, session.sessionId, data);
    }
    // An auth dict is needed even when the session is complete: the spec forbids succeeding without auth data.
    if (auth && isComplete(completed)) return { sessionId: session.sessionId, data, params };

    await r.beforeChallenge?.({ sessionId: session.sessionId, data });
    throw new MatrixError(
      failure?.errcode ?? 'M_UNAUTHORIZED',
      failure?.message ?? 'Additional authentication is required',
      {
        flows: r.flows.map((stages) => ({ stages })),
        params: {},
        session: session.sessionId,
        completed,
      },
      401,
    );
  }

  /** The data attached to a live session, for an operation that needs it before `require` (registration). */
  async sessionData(auth: unknown): Promise<Record<string, string>> {
    const sessionId = isJsonObject(auth) && typeof auth.session === 'string' ? auth.session : undefined;
    return sessionId ? ((await this.#live(sessionId))?.data ?? {}) : {};
  }

  /** Attaches `key: value` to the session's data. */
  async setSessionData(sessionId: string, key: string, value: string): Promise<void> {
    const session = await this.#live(sessionId);
    if (session) await setUiaData(this.storage.db, sessionId, { ...session.data, [key]: value });
  }

  async #live(sessionId: string): Promise<UiaSession | undefined> {
    const session = await getUiaSession(this.storage.db, sessionId);
    return session && session.createdTs >= Date.now() - SESSION_LIFETIME_MS ? session : undefined;
  }

  async #checkStage(stage: Stage, auth: Record<string, unknown>, r: UiaRequest): Promise<void> {
    switch (stage) {
      case 'm.login.dummy':
        return;
      case 'm.login.registration_token': {
        const token = auth.token;
        if (
          typeof token !== 'string' ||
          !(await checkRegistrationToken(this.storage.db, token, Date.now()))
        ) {
          throw new MatrixError('M_UNAUTHORIZED', 'Invalid registration token', {}, 401);
        }
        return;
      }
      case 'm.login.password': {
        if (!r.userId)
          throw new MatrixError('M_UNAUTHORIZED', 'Password authentication needs a logged-in user');
        const claimed = claimedUserId(auth, this.serverName);
        if (claimed !== undefined && claimed !== r.userId) {
          throw new MatrixError('M_FORBIDDEN', 'You can only authenticate as yourself');
        }
        const user = await getUser(this.storage.db, r.userId);
        const password = typeof auth.password === 'string' ? auth.password : '';
        if (!user || !(await verifyPassword(user.password_hash, password))) {
          throw new MatrixError('M_FORBIDDEN', 'Invalid password');
        }
        return;
      }
    }
  }
}

/** The user an `m.login.password` dict names, via `identifier` or the legacy `user` field. */
export function claimedUserId(auth: Record<string, unknown>, serverName: string): string | undefined {
  let name: unknown;
  const identifier = auth.identifier;
  if (isJsonObject(identifier)) {
    if (identifier.type !== 'm.id.user') return undefined;
    name = identifier.user;
  } else {
    name = auth.user;
  }
  if (typeof name !== 'string' || name === '') return undefined;
  if (!name.startsWith('@')) return `@${name.toLowerCase()}:${serverName}`;
  // Local user ids are all lower case (registration lower-cases them), so a full id is matched case-insensitively.
  const colon = name.indexOf(':');
  if (colon > 0 && name.slice(colon + 1) === serverName)
    return `${name.slice(0, colon).toLowerCase()}:${serverName}`;
  return name;
}
