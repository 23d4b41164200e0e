/** User profiles (client-server API "Profiles"): display name and avatar URL of local users. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseUserId } from '../../rooms/identifiers.js';
import type { UserRow } from '../../storage/schema.js';
import { profileFields } from '../../storage/profile-fields.js';
import { getUser, setProfileField } from '../../storage/users.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden, invalidParam, MatrixError, notFound } from '../errors.js';
import { parseBody, parseParams } from '../validate.js';

/** Synapse's limits (MAX_DISPLAYNAME_LEN, MAX_AVATAR_URL_LEN). */
export const MAX_DISPLAYNAME_LENGTH = 256;
export const MAX_AVATAR_URL_LENGTH = 1000;

const MXC_URI = /^mxc:\/\/[^/]+\/[^/]+$/;

type ProfileField = 'displayname' | 'avatar_url';

export interface Profile {
  displayname: string | null;
  avatar_url: string | null;
}

/**
 * Called after a user changed their display name or avatar URL. The rooms module hooks in here to send
 * updated m.room.member events to the user's joined rooms; until then no one is registered.
 */
export type ProfileChangeHook = (userId: string, profile: Profile) => Promise<void>;

export type ProfileDeps = Pick<
  ApiDeps,
  'config' | 'storage' | 'auth' | 'remoteQueries' | 'appServiceQueries' | 'reader'
> & {
  onProfileChange?: ProfileChangeHook;
};

const UserParams = z.object({ userId: z.string() });

const DisplaynameBody = z.looseObject({ displayname: z.string().max(MAX_DISPLAYNAME_LENGTH) });
const AvatarUrlBody = z.looseObject({
  avatar_url: z
    .string()
    .max(MAX_AVATAR_URL_LENGTH)
    .refine((s) => s === '' || MXC_URI.test(s), 'must be an mxc:// URI or empty'),
});

function fieldValue(field: ProfileField, body: unknown): string {
  return field === 'displayname'
    ? parseBody(DisplaynameBody, body).displayname
    : parseBody(AvatarUrlBody, body).avatar_url;
}

export function profileRoutes(app: FastifyInstance, deps: ProfileDeps): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** The active local user named in the path; 404 for unknown, remote and deactivated users. */
  async function profileOwner(params: unknown): Promise<UserRow> {
    const { userId } = parseParams(UserParams, params);
    const parsed = parseUserId(userId, { historical: true });
    if (!parsed) throw invalidParam(`Invalid user ID: ${userId}`);
    const local = parsed.serverName === deps.config.server_name;
    let user = local ? await getUser(deps.storage.db, userId) : undefined;
    // An unknown user of an application service's namespace: the AS may create it when asked.
    if (local && !user && (await deps.appServiceQueries?.queryUser(userId)))
      user = await getUser(deps.storage.db, userId);
    if (!user || user.deactivated) throw notFound('Profile not found');
    return user;
  }

  /** Only the owner may change a profile. */
  function ownUserId(req: FastifyRequest): string {
    const { userId } = parseParams(UserParams, req.params);
    if (userId !== requester(req).userId) throw forbidden("Cannot change another user's profile");
    return userId;
  }

  async function setField(userId: string, field: ProfileField, value: string | null): Promise<void> {
    await setProfileField(deps.storage.db, userId, field, value);
    const hook = deps.onProfileChange;
    const user = hook && (await getUser(deps.storage.db, userId));
    if (hook && user) await hook(userId, { displayname: user.displayname, avatar_url: user.avatar_url });
  }

  /**
   * Another server's user's profile, asked of that server (federation /query/profile); undefined for local users
   * or without federation. Its 404 is ours; an unreachable server is 502, as Synapse answers.
   */
  async function remoteProfile(
    params: unknown,
    field?: string,
  ): Promise<Record<string, unknown> | undefined> {
    const { userId } = parseParams(UserParams, params);
    const parsed = parseUserId(userId, { historical: true });
    if (!parsed || parsed.serverName === deps.config.server_name || !deps.remoteQueries) return undefined;
    try {
      return await deps.remoteQueries.profile(parsed.serverName, userId, field);
    } catch (err) {
      if ((err as { status?: unknown }).status === 404) throw notFound('Profile not found');
      throw new MatrixError('M_UNKNOWN', `Failed to fetch profile: ${(err as Error).message}`, {}, 502);
    }
  }

  /** GET /_matrix/client/v3/profile/{userId} */
  app.get('/_matrix/client/v3/profile/:userId', async (req) => {
    const remote = await remoteProfile(req.params);
    if (remote) return remote;
    const user = await profileOwner(req.params);
    // Custom fields (v1.16, profile-fields.ts) first: the two columns always win.
    const custom = await profileFields(deps.storage.db, user.user_id, (rec) =>
      deps.reader.damage.report(rec),
    );
    return {
      ...custom,
      ...(user.displayname !== null && { displayname: user.displayname }),
      ...(user.avatar_url !== null && { avatar_url: user.avatar_url }),
    };
  });

  for (const field of ['displayname', 'avatar_url'] as const) {
    const path = `/_matrix/client/v3/profile/:userId/${field}`;

    /** GET /_matrix/client/v3/profile/{userId}/{displayname,avatar_url} */
    app.get(path, async (req) => {
      const remote = await remoteProfile(req.params, field);
      if (remote) {
        if (typeof remote[field] !== 'string') throw notFound(`The user has no ${field}`);
        return { [field]: remote[field] };
      }
      const value = (await profileOwner(req.params))[field];
      if (value === null) throw notFound(`The user has no ${field}`);
      return { [field]: value };
    });

    /** PUT /_matrix/client/v3/profile/{userId}/{displayname,avatar_url} */
    app.put(path, guard, async (req) => {
      const userId = ownUserId(req);
      const value = fieldValue(field, req.body);
      await setField(userId, field, value === '' ? null : value);
      return {};
    });

    /** DELETE /_matrix/client/v3/profile/{userId}/{displayname,avatar_url} */
    app.delete(path, guard, async (req) => {
      await setField(ownUserId(req), field, null);
      return {};
    });
  }
}
