/**
 * User-interactive authentication (client-server API, "User-Interactive Authentication API").
 * A request needing UIA without a completed flow is answered 401 with the flows, params and session id.
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
} from '../storage/uia.js';
import { getUser } from '../storage/users.js';
import { MatrixError } from './errors.js';
import { isJsonObject } from './validate.js';

export type Stage = 'm.login.dummy' | 'm.login.password' | 'm.login.registration_token';

export interface UiaRequest {
  req: FastifyRequest;
  /** The `auth` dict of the request body, if any. */
  auth: unknown;
  flows: Stage[][];
  /** The user performing the operation (absent for registration). */
  userId?: string | undefined;
}

const SESSION_LIFETIME_MS = 30 * 60_000;

export class Uia {
  constructor(
    private readonly storage: Storage,
    private readonly serverName: string,
  ) {}

  /** Returns when a flow is complete; otherwise throws the 401 UIA response (with the errcode of a failed stage). */
  async require(r: UiaRequest): Promise<void> {
    // The concrete path (not the route pattern): a session started to delete one device cannot delete another.
    const requestKey = `${r.req.method} ${r.req.url.split('?')[0] ?? ''}`;
    const db = this.storage.db;
    const auth = isJsonObject(r.auth) ? r.auth : undefined;
    const sessionId = typeof auth?.session === 'string' ? auth.session : undefined;
    let completed: string[] = [];
    let session = sessionId ? await getUiaSession(db, sessionId) : undefined;
    if (sessionId && (!session || session.createdTs < Date.now() - SESSION_LIFETIME_MS)) {
      throw new MatrixError('M_UNKNOWN', 'Unknown or expired UIA session', {}, 400);
    }
    if (session) {
      if (session.requestKey !== requestKey || (session.userId ?? undefined) !== r.userId) {
        throw new MatrixError('M_FORBIDDEN', 'This UIA session was started for another request');
      }
      completed = session.completed;
    }

    // A failed stage is answered like an incomplete flow (401 with flows and session), plus its errcode.
    let failure: MatrixError | undefined;
    if (auth && typeof auth.type === 'string') {
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
        if (!completed.includes(stage)) completed = [...completed, stage];
        if (r.flows.some((f) => f.every((s) => completed.includes(s)))) {
          if (session)
            await db.deleteFrom('uia_sessions').where('session_id', '=', session.sessionId).execute();
          return;
        }
      }
    }

    if (!session) {
      session = {
        sessionId: randomBytes(12).toString('base64url'),
        createdTs: Date.now(),
        completed,
        requestKey,
        userId: r.userId ?? null,
      };
      await deleteExpiredUiaSessions(db, Date.now() - SESSION_LIFETIME_MS);
      await createUiaSession(db, session);
    } else {
      await setUiaCompleted(db, session.sessionId, completed);
    }
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
