/**
 * Custom profile fields (client-server API "Profiles", v1.16): GET/PUT/DELETE /profile/{userId}/{keyName} for every
 * key but `displayname` and `avatar_url` (their own routes in profile.ts win, being static). Keys are `m.tz` or the
 * Common Namespaced Identifier Grammar (other `m.` keys are reserved), at most 255 bytes (M_KEY_TOO_LARGE); values
 * are any JSON (`m.tz` a string; null is stored, not a deletion); the whole profile stays under 64 KiB
 * (M_PROFILE_TOO_LARGE). Another server's user's field is asked of that server (federation /query/profile `field`).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseUserId } from '../../rooms/identifiers.js';
import {
  deleteProfileField,
  profileField,
  profileFields,
  setProfileFieldValue,
} from '../../storage/profile-fields.js';
import { getUser } from '../../storage/users.js';
import { isJsonObject } from '../../util/validate.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden, invalidParam, MatrixError, missingParam, notFound } from '../errors.js';

/** The spec's bound on a whole profile (the JSON of every field). */
export const MAX_PROFILE_BYTES = 64 * 1024;
export const MAX_PROFILE_KEY_BYTES = 255;
const KEY_GRAMMAR = /^[a-z][a-z0-9._-]*$/;

type FieldParams = { Params: { userId: string; keyName: string } };

/** Checks a custom key for PUT and DELETE. */
function checkKey(key: string): void {
  if (Buffer.byteLength(key, 'utf8') > MAX_PROFILE_KEY_BYTES) {
    throw new MatrixError('M_KEY_TOO_LARGE', `Profile keys are at most ${MAX_PROFILE_KEY_BYTES} bytes`);
  }
  if (!KEY_GRAMMAR.test(key) || (key.startsWith('m.') && key !== 'm.tz')) {
    throw invalidParam(`Invalid profile key: ${key}`);
  }
}

export function profileFieldRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'config' | 'storage' | 'auth' | 'federation' | 'reader'>,
): void {
  const { storage, config } = deps;
  const guard = { preHandler: deps.auth.requireUser };
  const damage = (rec: Parameters<typeof deps.reader.damage.report>[0]): void =>
    deps.reader.damage.report(rec);

  function ownKey(req: FastifyRequest<FieldParams>): { userId: string; key: string } {
    const { userId, keyName } = req.params;
    if (userId !== requester(req).userId) throw forbidden("Cannot change another user's profile");
    checkKey(keyName);
    return { userId, key: keyName };
  }

  /** One field of another server's user, or a 404. */
  async function remoteField(server: string, userId: string, key: string): Promise<Record<string, unknown>> {
    const client = deps.federation?.client;
    if (!client) throw notFound('Profile not found');
    let body: unknown;
    try {
      body = (
        await client.get(server, '/_matrix/federation/v1/query/profile', {
          query: { user_id: userId, field: key },
        })
      ).body;
    } catch (err) {
      if ((err as { status?: unknown }).status === 404) throw notFound('Profile not found');
      throw new MatrixError('M_UNKNOWN', `Failed to fetch profile: ${(err as Error).message}`, {}, 502);
    }
    if (!isJsonObject(body) || !(key in body)) throw notFound(`The user has no ${key}`);
    return { [key]: body[key] };
  }

  /** GET /_matrix/client/v3/profile/{userId}/{keyName} */
  app.get<FieldParams>('/_matrix/client/v3/profile/:userId/:keyName', async (req) => {
    const { userId, keyName } = req.params;
    const parsed = parseUserId(userId, { historical: true });
    if (!parsed) throw invalidParam(`Invalid user ID: ${userId}`);
    if (parsed.serverName !== config.server_name) return remoteField(parsed.serverName, userId, keyName);
    const user = await getUser(storage.db, userId);
    if (!user || user.deactivated) throw notFound('Profile not found');
    const field = await profileField(storage.db, userId, keyName, damage);
    if (!field) throw notFound(`The user has no ${keyName}`);
    return { [keyName]: field.v };
  });

  /** PUT /_matrix/client/v3/profile/{userId}/{keyName} */
  app.put<FieldParams>('/_matrix/client/v3/profile/:userId/:keyName', guard, async (req) => {
    const { userId, key } = ownKey(req);
    const body: unknown = req.body;
    if (!isJsonObject(body)) throw new MatrixError('M_BAD_JSON', 'The body must be a JSON object');
    if (!(key in body)) throw missingParam(`Missing ${key} in the body`);
    const value = body[key];
    if (key === 'm.tz' && typeof value !== 'string') throw invalidParam('m.tz must be a string');
    const user = await getUser(storage.db, userId);
    const fields = await profileFields(storage.db, userId, damage);
    const whole = {
      ...(user?.displayname != null && { displayname: user.displayname }),
      ...(user?.avatar_url != null && { avatar_url: user.avatar_url }),
      ...fields,
      [key]: value,
    };
    if (Buffer.byteLength(JSON.stringify(whole), 'utf8') >= MAX_PROFILE_BYTES) {
      throw new MatrixError('M_PROFILE_TOO_LARGE', 'The profile would exceed 64 KiB');
    }
    await setProfileFieldValue(storage.db, userId, key, value);
    return {};
  });

  /** DELETE /_matrix/client/v3/profile/{userId}/{keyName} */
  app.delete<FieldParams>('/_matrix/client/v3/profile/:userId/:keyName', guard, async (req) => {
    const { userId, key } = ownKey(req);
    await deleteProfileField(storage.db, userId, key);
    return {};
  });
}
