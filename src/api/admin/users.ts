/**
 * Synapse-compatible user administration: /_synapse/admin/v2/users (list, query, create or modify),
 * v1/deactivate, v1/reset_password, v1/whois, v1/users/{userId}/joined_rooms and v2 devices.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { createAccount, validateLocalpart } from '../../accounts/register.js';
import { hashPassword } from '../../accounts/secrets.js';
import { eraseUserData } from '../../accounts/deactivate.js';
import { listUsers } from '../../storage/admin-queries.js';
import { deleteDevices, getDevice, listDevices, setDeviceDisplayName } from '../../storage/devices.js';
import type { DeviceRow, UserRow } from '../../storage/schema.js';
import { getUser, markDeactivated, setPasswordHash, setProfileField } from '../../storage/users.js';
import { membershipsOf } from '../../sync/queries.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody, parseQuery } from '../validate.js';

type Deps = Pick<ApiDeps, 'config' | 'storage' | 'auth' | 'writer'>;

const bool = z.enum(['true', 'false']).transform((v) => v === 'true');
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

const ListQuery = z.looseObject({
  from: int(0).default(0),
  limit: int(0, 10_000).default(100),
  name: z.string().optional(),
  user_id: z.string().optional(),
  guests: bool.default(true),
  deactivated: bool.default(false),
  admins: bool.optional(),
  order_by: z
    .enum([
      'name',
      'is_guest',
      'admin',
      'user_type',
      'deactivated',
      'displayname',
      'avatar_url',
      'creation_ts',
    ])
    .default('name'),
  dir: z.enum(['f', 'b']).default('f'),
});

const PutBody = z.looseObject({
  password: z.string().min(1).max(512).optional(),
  logout_devices: z.boolean().default(true),
  displayname: z.string().max(256).nullable().optional(),
  avatar_url: z.string().max(1000).nullable().optional(),
  admin: z.boolean().optional(),
  deactivated: z.boolean().optional(),
  locked: z.boolean().optional(),
  user_type: z.string().nullable().optional(),
});

const ResetBody = z.looseObject({
  new_password: z.string().min(1).max(512),
  logout_devices: z.boolean().default(true),
});

const DeactivateBody = z.looseObject({ erase: z.boolean().default(false) });

const DeviceBody = z.looseObject({ display_name: z.string().max(1000).optional() });
const DeleteDevicesBody = z.looseObject({ devices: z.array(z.string()) });

/** The user object of Synapse's "query user account" and list responses. */
export function userJson(u: UserRow, lastSeenTs: number | null = null): Record<string, unknown> {
  return {
    name: u.user_id,
    displayname: u.displayname,
    avatar_url: u.avatar_url,
    threepids: [],
    external_ids: [],
    is_guest: u.is_guest,
    admin: u.is_admin,
    deactivated: u.deactivated,
    erased: false,
    shadow_banned: 0,
    locked: u.locked === 1,
    approved: true,
    creation_ts: u.created_ts,
    appservice_id: null,
    consent_server_notice_sent: null,
    consent_version: null,
    consent_ts: null,
    user_type: u.user_type,
    last_seen_ts: lastSeenTs,
  };
}

function deviceJson(d: DeviceRow): Record<string, unknown> {
  return {
    device_id: d.device_id,
    display_name: d.display_name,
    last_seen_ip: d.last_seen_ip,
    last_seen_ts: d.last_seen_ts,
    last_seen_user_agent: d.last_seen_user_agent,
    user_id: d.user_id,
  };
}

function userIdParam(req: FastifyRequest, serverName: string, localOnly = true): string {
  const userId = (req.params as { userId: string }).userId;
  if (!/^@[^:]+:.+$/.test(userId)) throw new MatrixError('M_INVALID_PARAM', `Invalid user id ${userId}`);
  if (localOnly && !userId.endsWith(`:${serverName}`)) {
    throw new MatrixError('M_UNKNOWN', 'Can only look up local users', {}, 400);
  }
  return userId;
}

async function existingUser(deps: Deps, userId: string): Promise<UserRow> {
  const u = await getUser(deps.storage.db, userId);
  if (!u) throw new MatrixError('M_NOT_FOUND', 'User not found');
  return u;
}

/** Deactivates a user as Synapse does: no password, no devices, no profile, out of every room. */
export async function deactivateUser(deps: Deps, userId: string): Promise<void> {
  await deps.storage.db.transaction().execute(async (trx) => {
    await markDeactivated(trx, userId);
    await trx.deleteFrom('devices').where('user_id', '=', userId).execute();
  });
  deps.auth.forget(userId);
  for (const m of await membershipsOf(deps.storage.db, userId)) {
    if (m.membership !== 'join' && m.membership !== 'invite' && m.membership !== 'knock') continue;
    await deps.writer
      .send(m.room_id, {
        type: 'm.room.member',
        state_key: userId,
        sender: userId,
        content: { membership: 'leave' },
      })
      .catch(() => undefined);
  }
}

async function logoutAll(deps: Deps, userId: string): Promise<void> {
  await deps.storage.db.deleteFrom('devices').where('user_id', '=', userId).execute();
  deps.auth.forget(userId);
}

export function adminUserRoutes(app: FastifyInstance, deps: Deps): void {
  const { storage, config } = deps;
  const guard = { preHandler: deps.auth.requireAdmin };
  const sn = config.server_name;

  /** GET /_synapse/admin/v2/users */
  app.get('/_synapse/admin/v2/users', guard, async (req) => {
    const q = parseQuery(ListQuery, req.query);
    const { users, total } = await listUsers(storage.db, {
      from: q.from,
      limit: q.limit,
      name: q.name,
      userId: q.user_id,
      guests: q.guests,
      deactivated: q.deactivated,
      admins: q.admins,
      orderBy: q.order_by,
      dir: q.dir,
    });
    const next = q.from + users.length;
    return {
      users: users.map((u) => userJson(u, u.last_seen_ts)),
      total,
      ...(next < total ? { next_token: String(next) } : {}),
    };
  });

  /** GET /_synapse/admin/v2/users/{userId} */
  app.get('/_synapse/admin/v2/users/:userId', guard, async (req) => {
    const u = await existingUser(deps, userIdParam(req, sn));
    return userJson(u);
  });

  /** PUT /_synapse/admin/v2/users/{userId}: creates (201) or modifies (200) a local user. */
  app.put('/_synapse/admin/v2/users/:userId', guard, async (req, reply) => {
    const userId = userIdParam(req, sn);
    const body = parseBody(PutBody, req.body);
    const db = storage.db;
    let existing = await getUser(db, userId);
    if (!existing) {
      const localpart = userId.slice(1, userId.lastIndexOf(':'));
      validateLocalpart(localpart, sn);
      await createAccount(db, {
        localpart,
        serverName: sn,
        password: body.password ?? null,
        admin: body.admin ?? false,
        userType: body.user_type ?? null,
        displayname: body.displayname ?? localpart,
      });
      if (body.avatar_url) await setProfileField(db, userId, 'avatar_url', body.avatar_url);
      if (body.deactivated) await deactivateUser(deps, userId);
      reply.code(201);
      return userJson(await existingUser(deps, userId));
    }
    if (body.password !== undefined) {
      await setPasswordHash(db, userId, await hashPassword(body.password));
      if (body.logout_devices) await logoutAll(deps, userId);
    }
    if (body.displayname !== undefined) await setProfileField(db, userId, 'displayname', body.displayname);
    if (body.avatar_url !== undefined) await setProfileField(db, userId, 'avatar_url', body.avatar_url);
    const flags: { is_admin?: number; locked?: number; user_type?: string | null } = {};
    if (body.admin !== undefined) flags.is_admin = body.admin ? 1 : 0;
    if (body.locked !== undefined) flags.locked = body.locked ? 1 : 0;
    if (body.user_type !== undefined) flags.user_type = body.user_type;
    if (Object.keys(flags).length)
      await db.updateTable('users').set(flags).where('user_id', '=', userId).execute();
    if (body.deactivated === true && !existing.deactivated) await deactivateUser(deps, userId);
    if (body.deactivated === false && existing.deactivated) {
      if (body.password === undefined) {
        throw new MatrixError('M_UNKNOWN', 'Must provide a password to re-activate an account.', {}, 400);
      }
      await db.updateTable('users').set({ deactivated: 0 }).where('user_id', '=', userId).execute();
      await setPasswordHash(db, userId, await hashPassword(body.password));
    }
    existing = await existingUser(deps, userId);
    return userJson(existing);
  });

  /** POST /_synapse/admin/v1/deactivate/{userId} */
  app.post('/_synapse/admin/v1/deactivate/:userId', guard, async (req) => {
    const userId = userIdParam(req, sn);
    const { erase } = parseBody(DeactivateBody, req.body ?? {});
    await existingUser(deps, userId);
    await deactivateUser(deps, userId);
    await eraseUserData(deps.storage.db, userId, erase);
    return { id_server_unbind_result: 'success' };
  });

  /** POST /_synapse/admin/v1/reset_password/{userId} */
  app.post('/_synapse/admin/v1/reset_password/:userId', guard, async (req) => {
    const userId = userIdParam(req, sn);
    const body = parseBody(ResetBody, req.body);
    const u = await existingUser(deps, userId);
    if (u.deactivated) throw new MatrixError('M_FORBIDDEN', 'The user is deactivated');
    await setPasswordHash(storage.db, userId, await hashPassword(body.new_password));
    if (body.logout_devices) await logoutAll(deps, userId);
    return {};
  });

  /** GET /_synapse/admin/v1/whois/{userId} */
  app.get('/_synapse/admin/v1/whois/:userId', guard, async (req) => {
    const userId = userIdParam(req, sn);
    await existingUser(deps, userId);
    const devices: Record<string, unknown> = {};
    for (const d of await listDevices(storage.db, userId)) {
      const connections =
        d.last_seen_ts === null
          ? []
          : [{ ip: d.last_seen_ip, last_seen: d.last_seen_ts, user_agent: d.last_seen_user_agent }];
      devices[d.device_id] = { sessions: [{ connections }] };
    }
    return { user_id: userId, devices };
  });

  /** GET /_synapse/admin/v1/users/{userId}/joined_rooms */
  app.get('/_synapse/admin/v1/users/:userId/joined_rooms', guard, async (req) => {
    const userId = userIdParam(req, sn, false);
    const rooms = (await membershipsOf(storage.db, userId)).filter((m) => m.membership === 'join');
    return { joined_rooms: rooms.map((m) => m.room_id), total: rooms.length };
  });

  /** GET /_synapse/admin/v2/users/{userId}/devices */
  app.get('/_synapse/admin/v2/users/:userId/devices', guard, async (req) => {
    const userId = userIdParam(req, sn);
    await existingUser(deps, userId);
    const devices = (await listDevices(storage.db, userId)).map(deviceJson);
    return { devices, total: devices.length };
  });

  /** POST /_synapse/admin/v2/users/{userId}/delete_devices */
  app.post('/_synapse/admin/v2/users/:userId/delete_devices', guard, async (req) => {
    const userId = userIdParam(req, sn);
    const body = parseBody(DeleteDevicesBody, req.body);
    await existingUser(deps, userId);
    await deleteDevices(storage.db, userId, body.devices);
    deps.auth.forget(userId);
    return {};
  });

  const deviceParams = (req: FastifyRequest): [string, string] => [
    userIdParam(req, sn),
    (req.params as { deviceId: string }).deviceId,
  ];

  /** GET /_synapse/admin/v2/users/{userId}/devices/{deviceId} */
  app.get('/_synapse/admin/v2/users/:userId/devices/:deviceId', guard, async (req) => {
    const [userId, deviceId] = deviceParams(req);
    const d = await getDevice(storage.db, userId, deviceId);
    if (!d) throw new MatrixError('M_NOT_FOUND', 'No device found');
    return deviceJson(d);
  });

  /** PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId} */
  app.put('/_synapse/admin/v2/users/:userId/devices/:deviceId', guard, async (req) => {
    const [userId, deviceId] = deviceParams(req);
    const body = parseBody(DeviceBody, req.body);
    if (!(await getDevice(storage.db, userId, deviceId)))
      throw new MatrixError('M_NOT_FOUND', 'No device found');
    if (body.display_name !== undefined)
      await setDeviceDisplayName(storage.db, userId, deviceId, body.display_name);
    return {};
  });

  /** DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId} */
  app.delete('/_synapse/admin/v2/users/:userId/devices/:deviceId', guard, async (req) => {
    const [userId, deviceId] = deviceParams(req);
    await existingUser(deps, userId);
    await deleteDevices(storage.db, userId, [deviceId]);
    deps.auth.forget(userId);
    return {};
  });
}
