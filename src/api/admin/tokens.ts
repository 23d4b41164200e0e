/** Registration tokens at /_synapse/admin/v1/registration_tokens, as Synapse's admin API (list, get, new, update, delete). */
import { randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isUniqueViolation } from '../../storage/dialect.js';
import { createRegistrationToken } from '../../storage/registration-tokens.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody, parseQuery } from '../validate.js';

type Deps = Pick<ApiDeps, 'storage' | 'auth'>;

const TOKEN_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-';
const Token = z.string().regex(/^[A-Za-z0-9._~-]{1,64}$/, 'at most 64 characters from A-Z a-z 0-9 . _ ~ -');
const Uses = z.number().int().nonnegative().nullable();
const Expiry = z
  .number()
  .int()
  .nullable()
  .refine((v) => v === null || v > Date.now(), 'expiry_time must not be in the past');

const NewBody = z.looseObject({
  token: Token.optional(),
  length: z.number().int().min(1).max(64).default(16),
  uses_allowed: Uses.default(null),
  expiry_time: Expiry.default(null),
});
const UpdateBody = z.looseObject({ uses_allowed: Uses.optional(), expiry_time: Expiry.optional() });
const ListQuery = z.looseObject({ valid: z.enum(['true', 'false']).optional() });

export function adminTokenRoutes(app: FastifyInstance, deps: Deps): void {
  const db = deps.storage.db;
  const guard = { preHandler: deps.auth.requireAdmin };
  const base = '/_synapse/admin/v1/registration_tokens';

  const find = async (token: string) => {
    const row = await db
      .selectFrom('registration_tokens')
      .selectAll()
      .where('token', '=', token)
      .executeTakeFirst();
    if (!row) throw new MatrixError('M_NOT_FOUND', `No such registration token: ${token}`);
    return row;
  };
  const param = (req: FastifyRequest): string => (req.params as { token: string }).token;

  /** GET /_synapse/admin/v1/registration_tokens */
  app.get(base, guard, async (req) => {
    const q = parseQuery(ListQuery, req.query);
    const now = Date.now();
    let rows = await db.selectFrom('registration_tokens').selectAll().orderBy('token').execute();
    if (q.valid !== undefined) {
      const want = q.valid === 'true';
      rows = rows.filter((r) => {
        const valid =
          (r.expiry_time === null || r.expiry_time > now) &&
          (r.uses_allowed === null || r.pending + r.completed < r.uses_allowed);
        return valid === want;
      });
    }
    return { registration_tokens: rows };
  });

  /** POST /_synapse/admin/v1/registration_tokens/new */
  app.post(`${base}/new`, guard, async (req) => {
    const body = parseBody(NewBody, req.body ?? {});
    const token =
      body.token ??
      Array.from({ length: body.length }, () => TOKEN_CHARS[randomInt(TOKEN_CHARS.length)]).join('');
    try {
      await createRegistrationToken(db, {
        token,
        usesAllowed: body.uses_allowed,
        expiryTime: body.expiry_time,
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new MatrixError('M_INVALID_PARAM', `Token already in use: ${token}`);
      throw err;
    }
    return find(token);
  });

  /** GET /_synapse/admin/v1/registration_tokens/{token} */
  app.get(`${base}/:token`, guard, async (req) => find(param(req)));

  /** PUT /_synapse/admin/v1/registration_tokens/{token} */
  app.put(`${base}/:token`, guard, async (req) => {
    const token = param(req);
    const body = parseBody(UpdateBody, req.body ?? {});
    await find(token);
    const set: { uses_allowed?: number | null; expiry_time?: number | null } = {};
    if (body.uses_allowed !== undefined) set.uses_allowed = body.uses_allowed;
    if (body.expiry_time !== undefined) set.expiry_time = body.expiry_time;
    if (Object.keys(set).length)
      await db.updateTable('registration_tokens').set(set).where('token', '=', token).execute();
    return find(token);
  });

  /** DELETE /_synapse/admin/v1/registration_tokens/{token} */
  app.delete(`${base}/:token`, guard, async (req) => {
    const token = param(req);
    await find(token);
    await db.deleteFrom('registration_tokens').where('token', '=', token).execute();
    return {};
  });
}
