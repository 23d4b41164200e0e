/** Server-side key backup: backup versions and the session keys stored in them. */
import type { RoomKeysTable, RoomKeyVersionsTable } from './schema.js';
import type { Executor } from './users.js';

export type BackupVersionRow = RoomKeyVersionsTable;
export type RoomKeyRow = RoomKeysTable;

function versionRow<T extends { version: number | string; etag: number | string }>(
  r: T,
): T & { version: number; etag: number } {
  return { ...r, version: Number(r.version), etag: Number(r.etag) };
}

/** The newest version that is not deleted, or the given one (deleted or not). */
export async function getBackupVersion(
  db: Executor,
  userId: string,
  version?: number,
): Promise<BackupVersionRow | undefined> {
  let q = db.selectFrom('room_key_versions').selectAll().where('user_id', '=', userId);
  q =
    version === undefined
      ? q.where('deleted', '=', 0).orderBy('version', 'desc').limit(1)
      : q.where('version', '=', version);
  const row = await q.executeTakeFirst();
  return row ? versionRow(row) : undefined;
}

export async function createBackupVersion(
  db: Executor,
  userId: string,
  algorithm: string,
  authData: string,
): Promise<number> {
  const max = await db
    .selectFrom('room_key_versions')
    .select((eb) => eb.fn.max('version').as('v'))
    .where('user_id', '=', userId)
    .executeTakeFirst();
  const version = Number(max?.v ?? 0) + 1;
  await db
    .insertInto('room_key_versions')
    .values({ user_id: userId, version, algorithm, auth_data: authData, etag: 0, deleted: 0 })
    .execute();
  return version;
}

export async function updateBackupVersion(
  db: Executor,
  userId: string,
  version: number,
  authData: string,
): Promise<void> {
  await db
    .updateTable('room_key_versions')
    .set({ auth_data: authData })
    .where('user_id', '=', userId)
    .where('version', '=', version)
    .execute();
}

export async function deleteBackupVersion(db: Executor, userId: string, version: number): Promise<void> {
  await db.deleteFrom('room_keys').where('user_id', '=', userId).where('version', '=', version).execute();
  await db
    .updateTable('room_key_versions')
    .set({ deleted: 1 })
    .where('user_id', '=', userId)
    .where('version', '=', version)
    .execute();
}

export async function bumpEtag(db: Executor, userId: string, version: number): Promise<void> {
  await db
    .updateTable('room_key_versions')
    .set((eb) => ({ etag: eb('etag', '+', 1) }))
    .where('user_id', '=', userId)
    .where('version', '=', version)
    .execute();
}

export async function countRoomKeys(db: Executor, userId: string, version: number): Promise<number> {
  const row = await db
    .selectFrom('room_keys')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('user_id', '=', userId)
    .where('version', '=', version)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

export async function getRoomKeys(
  db: Executor,
  userId: string,
  version: number,
  roomId?: string,
  sessionId?: string,
): Promise<RoomKeyRow[]> {
  let q = db.selectFrom('room_keys').selectAll().where('user_id', '=', userId).where('version', '=', version);
  if (roomId !== undefined) q = q.where('room_id', '=', roomId);
  if (sessionId !== undefined) q = q.where('session_id', '=', sessionId);
  const rows = await q.orderBy('room_id').orderBy('session_id').execute();
  return rows.map((r) => ({
    ...r,
    version: Number(r.version),
    first_message_index: Number(r.first_message_index),
    forwarded_count: Number(r.forwarded_count),
  }));
}

export async function putRoomKey(db: Executor, row: RoomKeyRow): Promise<void> {
  await db
    .insertInto('room_keys')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['user_id', 'version', 'room_id', 'session_id']).doUpdateSet({
        first_message_index: row.first_message_index,
        forwarded_count: row.forwarded_count,
        is_verified: row.is_verified,
        session_data: row.session_data,
      }),
    )
    .execute();
}

export async function deleteRoomKeys(
  db: Executor,
  userId: string,
  version: number,
  roomId?: string,
  sessionId?: string,
): Promise<number> {
  let q = db.deleteFrom('room_keys').where('user_id', '=', userId).where('version', '=', version);
  if (roomId !== undefined) q = q.where('room_id', '=', roomId);
  if (sessionId !== undefined) q = q.where('session_id', '=', sessionId);
  const res = await q.executeTakeFirst();
  return Number(res.numDeletedRows);
}
