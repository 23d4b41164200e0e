/** Devices and the access and refresh tokens that belong to them (tokens cascade with their device). */
import type { DeviceRow } from './schema.js';
import type { Executor } from './users.js';

export interface TokenOwner {
  tokenId: number;
  userId: string;
  deviceId: string;
  expiresTs: number | null;
  isAdmin: boolean;
  isGuest: boolean;
  deactivated: boolean;
  locked: boolean;
}

export async function upsertDevice(
  db: Executor,
  userId: string,
  deviceId: string,
  displayName: string | null,
  now: number,
): Promise<void> {
  await db
    .insertInto('devices')
    .values({
      user_id: userId,
      device_id: deviceId,
      display_name: displayName,
      created_ts: now,
      last_seen_ts: now,
    })
    .onConflict((oc) =>
      oc
        .columns(['user_id', 'device_id'])
        .doUpdateSet(
          displayName === null ? { last_seen_ts: now } : { display_name: displayName, last_seen_ts: now },
        ),
    )
    .execute();
}

export async function getDevice(
  db: Executor,
  userId: string,
  deviceId: string,
): Promise<DeviceRow | undefined> {
  return db
    .selectFrom('devices')
    .selectAll()
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .executeTakeFirst();
}

export async function listDevices(db: Executor, userId: string): Promise<DeviceRow[]> {
  return db.selectFrom('devices').selectAll().where('user_id', '=', userId).orderBy('device_id').execute();
}

export async function setDeviceDisplayName(
  db: Executor,
  userId: string,
  deviceId: string,
  name: string | null,
): Promise<void> {
  await db
    .updateTable('devices')
    .set({ display_name: name })
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .execute();
}

export async function touchDevice(
  db: Executor,
  userId: string,
  deviceId: string,
  now: number,
  ip: string,
  ua: string | null,
): Promise<void> {
  await db
    .updateTable('devices')
    .set({ last_seen_ts: now, last_seen_ip: ip, last_seen_user_agent: ua })
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .execute();
}

/** Deletes devices; their tokens go with them through the foreign keys. */
export async function deleteDevices(
  db: Executor,
  userId: string,
  deviceIds: readonly string[],
): Promise<void> {
  if (deviceIds.length === 0) return;
  await db.deleteFrom('devices').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
}

export async function insertAccessToken(
  db: Executor,
  t: {
    tokenHash: string;
    userId: string;
    deviceId: string;
    now: number;
    expiresTs: number | null;
    refreshTokenId: number | null;
  },
): Promise<void> {
  await db
    .insertInto('access_tokens')
    .values({
      token_hash: t.tokenHash,
      user_id: t.userId,
      device_id: t.deviceId,
      created_ts: t.now,
      expires_ts: t.expiresTs,
      refresh_token_id: t.refreshTokenId,
    })
    .execute();
}

export async function insertRefreshToken(
  db: Executor,
  t: { tokenHash: string; userId: string; deviceId: string; now: number; expiresTs: number | null },
): Promise<number> {
  const row = await db
    .insertInto('refresh_tokens')
    .values({
      token_hash: t.tokenHash,
      user_id: t.userId,
      device_id: t.deviceId,
      created_ts: t.now,
      expires_ts: t.expiresTs,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return Number(row.id);
}

export async function findRefreshToken(
  db: Executor,
  tokenHash: string,
): Promise<{ id: number; user_id: string; device_id: string; expires_ts: number | null } | undefined> {
  return db
    .selectFrom('refresh_tokens')
    .select(['id', 'user_id', 'device_id', 'expires_ts'])
    .where('token_hash', '=', tokenHash)
    .executeTakeFirst();
}

export async function deleteRefreshToken(db: Executor, id: number): Promise<void> {
  await db.deleteFrom('refresh_tokens').where('id', '=', id).execute();
}

export async function findAccessToken(db: Executor, tokenHash: string): Promise<TokenOwner | undefined> {
  const row = await db
    .selectFrom('access_tokens as t')
    .innerJoin('users as u', 'u.user_id', 't.user_id')
    .select([
      't.id',
      't.user_id',
      't.device_id',
      't.expires_ts',
      'u.is_admin',
      'u.is_guest',
      'u.deactivated',
      'u.locked',
    ])
    .where('t.token_hash', '=', tokenHash)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    tokenId: Number(row.id),
    userId: row.user_id,
    deviceId: row.device_id,
    expiresTs: row.expires_ts,
    isAdmin: row.is_admin === 1,
    isGuest: row.is_guest === 1,
    deactivated: row.deactivated === 1,
    locked: row.locked === 1,
  };
}

export async function deleteAccessToken(db: Executor, tokenId: number): Promise<void> {
  await db.deleteFrom('access_tokens').where('id', '=', tokenId).execute();
}
