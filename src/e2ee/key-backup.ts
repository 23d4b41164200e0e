/**
 * Server-side key backup (client-server API "Server-side key backups"). Keys are stored per backup version; a
 * session key replaces the stored one only when it is better: verified over unverified, then the lower
 * first_message_index, then the lower forwarded_count. Every change of a version's keys bumps its etag.
 */
import type { Transaction } from 'kysely';
import { MatrixError, notFound } from '../api/errors.js';
import { isJsonObject } from '../util/validate.js';
import type { JsonObject } from '../rooms/event.js';
import type { Storage } from '../storage/db.js';
import {
  bumpEtag,
  countRoomKeys,
  createBackupVersion,
  deleteBackupVersion,
  deleteRoomKeys,
  getBackupVersion,
  getRoomKeys,
  putRoomKey,
  updateBackupVersion,
  type BackupVersionRow,
  type RoomKeyRow,
} from '../storage/key-backup.js';
import type { Database } from '../storage/schema.js';
import { canonicalOrBadJson } from './json.js';

export interface KeyBackupData {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  /** Algorithm-dependent (checkSessionData). */
  session_data: unknown;
}

/** The spec's backup algorithm; Synapse stores any other algorithm's data as given, and so does Hearth. */
export const CURVE25519_BACKUP = 'm.megolm_backup.v1.curve25519-aes-sha2';

/**
 * The `auth_data` of a backup version: for the spec's algorithm an object with the `public_key` string (and
 * `signatures`, if any, an object); for other algorithms any JSON value, as Synapse accepts it.
 */
export function checkAuthData(algorithm: string, authData: unknown): void {
  if (authData === undefined) throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: auth_data');
  if (algorithm !== CURVE25519_BACKUP) return;
  if (!isJsonObject(authData))
    throw new MatrixError('M_BAD_JSON', `auth_data of ${CURVE25519_BACKUP} must be an object`);
  if (typeof authData.public_key !== 'string' || authData.public_key === '')
    throw new MatrixError(
      authData.public_key === undefined ? 'M_MISSING_PARAM' : 'M_BAD_JSON',
      `auth_data of ${CURVE25519_BACKUP} needs a public_key string`,
    );
  if (authData.signatures !== undefined && !isJsonObject(authData.signatures))
    throw new MatrixError('M_BAD_JSON', 'auth_data.signatures must be an object');
}

/** The `session_data` of a backed-up key: an object for the spec's algorithm, any JSON value otherwise. */
function checkSessionData(algorithm: string, sessionData: unknown): void {
  if (sessionData === undefined) throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: session_data');
  if (algorithm === CURVE25519_BACKUP && !isJsonObject(sessionData))
    throw new MatrixError('M_BAD_JSON', `session_data of ${CURVE25519_BACKUP} must be an object`);
}

type Db = Storage['db'];

export function parseVersion(version: string | undefined): number | undefined {
  if (version === undefined) return undefined;
  return /^[1-9]\d{0,14}$/.test(version) ? Number(version) : -1;
}

async function versionOrNotFound(
  db: Db | Transaction<Database>,
  userId: string,
  version: number | undefined,
): Promise<BackupVersionRow> {
  const row = version === undefined || version < 0 ? undefined : await getBackupVersion(db, userId, version);
  if (!row || row.deleted) throw notFound('Unknown backup version');
  return row;
}

export async function versionInfo(db: Db, userId: string, version?: number): Promise<JsonObject> {
  const row =
    version === undefined ? await getBackupVersion(db, userId) : await versionOrNotFound(db, userId, version);
  if (!row || row.deleted)
    throw notFound(version === undefined ? 'No current backup version' : 'Unknown backup version');
  return {
    algorithm: row.algorithm,
    auth_data: JSON.parse(row.auth_data) as unknown,
    version: String(row.version),
    count: await countRoomKeys(db, userId, row.version),
    etag: String(row.etag),
  };
}

export async function createVersion(
  db: Db,
  userId: string,
  algorithm: string,
  authData: unknown,
): Promise<string> {
  checkAuthData(algorithm, authData);
  const json = canonicalOrBadJson(authData, 'auth_data');
  return String(await db.transaction().execute((trx) => createBackupVersion(trx, userId, algorithm, json)));
}

export async function updateVersion(
  db: Db,
  userId: string,
  version: number | undefined,
  body: { algorithm: string; auth_data: unknown; version?: string | undefined },
): Promise<void> {
  const row = await versionOrNotFound(db, userId, version);
  if (body.version !== undefined && body.version !== String(row.version))
    throw new MatrixError(
      'M_INVALID_PARAM',
      'The version in the body does not match the version in the path',
    );
  if (body.algorithm !== row.algorithm)
    throw new MatrixError('M_INVALID_PARAM', 'The algorithm cannot be changed');
  checkAuthData(row.algorithm, body.auth_data);
  await updateBackupVersion(db, userId, row.version, canonicalOrBadJson(body.auth_data, 'auth_data'));
}

export async function deleteVersion(db: Db, userId: string, version: number | undefined): Promise<void> {
  const row = await versionOrNotFound(db, userId, version);
  await db.transaction().execute((trx) => deleteBackupVersion(trx, userId, row.version));
}

/** Whether `candidate` should replace `current` (the spec's rule, in its order). */
export function isBetterKey(candidate: KeyBackupData, current: RoomKeyRow): boolean {
  const verified = current.is_verified === 1;
  if (candidate.is_verified !== verified) return candidate.is_verified;
  if (candidate.first_message_index !== current.first_message_index)
    return candidate.first_message_index < current.first_message_index;
  return candidate.forwarded_count < current.forwarded_count;
}

async function checkCurrent(
  db: Db | Transaction<Database>,
  userId: string,
  version: number | undefined,
): Promise<BackupVersionRow> {
  const current = await getBackupVersion(db, userId);
  if (!current) throw notFound('No current backup version');
  if (version !== current.version)
    throw new MatrixError('M_WRONG_ROOM_KEYS_VERSION', 'Wrong backup version', {
      current_version: String(current.version),
    });
  return current;
}

/** PUT /room_keys/keys[...]: stores the better keys; answers the version's etag and key count. */
export async function putKeys(
  db: Db,
  userId: string,
  version: number | undefined,
  rooms: Record<string, Record<string, KeyBackupData>>,
): Promise<{ etag: string; count: number }> {
  return db.transaction().execute(async (trx) => {
    const current = await checkCurrent(trx, userId, version);
    let changed = false;
    for (const [roomId, sessions] of Object.entries(rooms)) {
      const existing = new Map(
        (await getRoomKeys(trx, userId, current.version, roomId)).map((k) => [k.session_id, k]),
      );
      for (const [sessionId, data] of Object.entries(sessions)) {
        checkSessionData(current.algorithm, data.session_data);
        const old = existing.get(sessionId);
        if (old && !isBetterKey(data, old)) continue;
        await putRoomKey(trx, {
          user_id: userId,
          version: current.version,
          room_id: roomId,
          session_id: sessionId,
          first_message_index: data.first_message_index,
          forwarded_count: data.forwarded_count,
          is_verified: data.is_verified ? 1 : 0,
          session_data: canonicalOrBadJson(data.session_data, 'session_data'),
        });
        changed = true;
      }
    }
    if (changed) await bumpEtag(trx, userId, current.version);
    const after = await versionOrNotFound(trx, userId, current.version);
    return { etag: String(after.etag), count: await countRoomKeys(trx, userId, current.version) };
  });
}

function keyJson(k: RoomKeyRow): JsonObject {
  return {
    first_message_index: k.first_message_index,
    forwarded_count: k.forwarded_count,
    is_verified: k.is_verified === 1,
    session_data: JSON.parse(k.session_data) as unknown,
  };
}

export async function getKeys(
  db: Db,
  userId: string,
  version: number | undefined,
  roomId?: string,
  sessionId?: string,
): Promise<JsonObject> {
  const row = await versionOrNotFound(db, userId, version);
  const keys = await getRoomKeys(db, userId, row.version, roomId, sessionId);
  if (sessionId !== undefined) {
    const k = keys[0];
    if (!k) throw notFound('No room key found');
    return keyJson(k);
  }
  const rooms: Record<string, { sessions: JsonObject }> = {};
  for (const k of keys) (rooms[k.room_id] ??= { sessions: {} }).sessions[k.session_id] = keyJson(k);
  if (roomId !== undefined) return rooms[roomId] ?? { sessions: {} };
  return { rooms };
}

export async function deleteKeys(
  db: Db,
  userId: string,
  version: number | undefined,
  roomId?: string,
  sessionId?: string,
): Promise<{ etag: string; count: number }> {
  return db.transaction().execute(async (trx) => {
    const row = await versionOrNotFound(trx, userId, version);
    if ((await deleteRoomKeys(trx, userId, row.version, roomId, sessionId)) > 0)
      await bumpEtag(trx, userId, row.version);
    const after = await versionOrNotFound(trx, userId, row.version);
    return { etag: String(after.etag), count: await countRoomKeys(trx, userId, row.version) };
  });
}
