/**
 * Device keys, one-time keys and fallback keys (client-server API "Key management API"): upload, query, claim.
 * Device keys changes are device-list changes; one-time keys are claimed atomically.
 */
import { MatrixError } from '../api/errors.js';
import { isJsonObject } from '../util/validate.js';
import type { JsonObject } from '../rooms/event.js';
import {
  claimKey,
  countOneTimeKeys,
  getCrossSigningKeys,
  getDeviceKeys,
  getOneTimeKeys,
  insertOneTimeKeys,
  listDeviceKeys,
  setDeviceKeys,
  setFallbackKeys,
  signaturesOf as storedSignatures,
  type NewKey,
  type SignatureRow,
} from '../storage/e2ee-keys.js';
import { getDevice } from '../storage/devices.js';
import { canonicalOrBadJson, serverOf, withSignatures } from './json.js';
import { withDeviceListChange, type E2eeDeps } from './device-lists.js';

export interface KeysUpload {
  device_keys?: JsonObject | undefined;
  one_time_keys?: Record<string, unknown> | undefined;
  fallback_keys?: Record<string, unknown> | undefined;
}

/** One-time key counts per algorithm; `signed_curve25519` is always present, as Synapse reports it. */
export async function oneTimeKeyCounts(
  db: E2eeDeps['storage']['db'],
  userId: string,
  deviceId: string,
): Promise<Record<string, number>> {
  return { signed_curve25519: 0, ...(await countOneTimeKeys(db, userId, deviceId)) };
}

/**
 * The checks Synapse makes on uploaded device keys (its KeyUploadRequestBody and the requester check): the fields'
 * shapes, and the user and device of the request. As Synapse, Hearth does not verify the self-signature: it stores and
 * serves the keys as uploaded, and clients verify them (SyTest uploads placeholder keys and signatures).
 */
function checkDeviceKeys(keys: JsonObject, userId: string, deviceId: string): void {
  const stringMap = (v: unknown): boolean =>
    isJsonObject(v) && Object.values(v).every((k) => typeof k === 'string');
  if (typeof keys.user_id !== 'string' || typeof keys.device_id !== 'string')
    throw new MatrixError('M_BAD_JSON', '`device_keys` needs `user_id` and `device_id` strings');
  if (!Array.isArray(keys.algorithms) || !keys.algorithms.every((a) => typeof a === 'string'))
    throw new MatrixError('M_BAD_JSON', '`device_keys.algorithms` must be a list of strings');
  if (!stringMap(keys.keys))
    throw new MatrixError('M_BAD_JSON', '`device_keys.keys` must map key ids to strings');
  if (!isJsonObject(keys.signatures) || !Object.values(keys.signatures).every(stringMap))
    throw new MatrixError(
      'M_BAD_JSON',
      '`device_keys.signatures` must map user ids to maps of key ids to strings',
    );
  if (keys.user_id !== userId)
    throw new MatrixError(
      'M_BAD_JSON',
      'Provided `user_id` in `device_keys` does not match that of the authenticated user',
    );
  if (keys.device_id !== deviceId)
    throw new MatrixError(
      'M_BAD_JSON',
      'Provided `device_id` in `device_keys` does not match that of the authenticated user device',
    );
}

function parseKeyMap(map: Record<string, unknown> | undefined, what: string): NewKey[] {
  const out: NewKey[] = [];
  for (const [id, value] of Object.entries(map ?? {})) {
    const colon = id.indexOf(':');
    if (colon <= 0 || colon === id.length - 1)
      throw new MatrixError('M_BAD_JSON', `Invalid ${what} key id ${id}: expected <algorithm>:<key id>`);
    if (typeof value !== 'string' && !isJsonObject(value))
      throw new MatrixError('M_BAD_JSON', `Invalid ${what} key ${id}: expected a string or an object`);
    out.push({
      algorithm: id.slice(0, colon),
      keyId: id.slice(colon + 1),
      json: canonicalOrBadJson(value, `${what} key`),
    });
  }
  return out;
}

/** POST /keys/upload */
export async function uploadKeys(
  deps: E2eeDeps,
  userId: string,
  deviceId: string,
  body: KeysUpload,
): Promise<{ one_time_key_counts: Record<string, number> }> {
  const { db } = deps.storage;
  if (!(await getDevice(db, userId, deviceId))) throw new MatrixError('M_NOT_FOUND', 'Unknown device');
  const otks = parseKeyMap(body.one_time_keys, 'one-time');
  const fallbacks = parseKeyMap(body.fallback_keys, 'fallback');
  const now = Date.now();

  if (body.device_keys) {
    const keys = body.device_keys;
    checkDeviceKeys(keys, userId, deviceId);
    const json = canonicalOrBadJson(keys, 'device_keys');
    // As Synapse: keys differing from the stored ones replace them, and the change is a device-list change.
    const old = await getDeviceKeys(db, userId, deviceId);
    if (json !== old) {
      await withDeviceListChange(deps, userId, false, (trx) =>
        setDeviceKeys(trx, userId, deviceId, json, now),
      );
    }
  }

  if (otks.length) {
    const existing = await getOneTimeKeys(db, userId, deviceId);
    const fresh: NewKey[] = [];
    for (const k of otks) {
      const old = existing.get(`${k.algorithm}:${k.keyId}`);
      if (old === undefined) fresh.push(k);
      else if (old !== k.json)
        throw new MatrixError(
          'M_UNKNOWN',
          `One time key ${k.algorithm}:${k.keyId} already exists with different content`,
          {},
          400,
        );
    }
    await insertOneTimeKeys(db, userId, deviceId, fresh, now);
  }
  if (fallbacks.length) await setFallbackKeys(db, userId, deviceId, fallbacks);
  return { one_time_key_counts: await oneTimeKeyCounts(db, userId, deviceId) };
}

function mergeSignatures(obj: JsonObject, target: string, sigs: readonly SignatureRow[]): JsonObject {
  return withSignatures(
    obj,
    sigs
      .filter((s) => s.target_key_id === target)
      .map((s) => ({ user: s.signer_user_id, keyId: s.signer_key_id, signature: s.signature })),
  );
}

/**
 * Other servers' keys, over federation (`/user/keys/query`, `/user/keys/claim`). Implemented by
 * federation/remote-keys.ts; each call rejects with an error carrying an HTTP `status` when the server does not
 * answer in time or answers with an error.
 */
export interface RemoteKeys {
  query(server: string, deviceKeys: Record<string, string[]>, timeoutMs: number): Promise<JsonObject>;
  claim(
    server: string,
    oneTimeKeys: Record<string, Record<string, string>>,
    timeoutMs: number,
  ): Promise<JsonObject>;
}

/** Synapse's default for /keys/query and /keys/claim towards other servers. */
export const DEFAULT_REMOTE_KEYS_TIMEOUT_MS = 10_000;

/** The `failures` entry for a server that did not answer (Synapse's _exception_to_failure). */
function failureOf(err: unknown): JsonObject {
  const status = (err as { status?: unknown }).status;
  return {
    status: typeof status === 'number' ? status : 503,
    message: err instanceof Error ? err.message : 'Unknown error',
  };
}

/** The entries of a remote answer's `map` that concern the server's own users, as objects. */
function ownUsersOf(map: unknown, server: string): [string, JsonObject][] {
  if (!isJsonObject(map)) return [];
  return Object.entries(map).filter(
    (e): e is [string, JsonObject] => serverOf(e[0]) === server && isJsonObject(e[1]),
  );
}

function groupByServer<T>(wanted: Record<string, T>): Map<string, Record<string, T>> {
  const out = new Map<string, Record<string, T>>();
  for (const [userId, v] of Object.entries(wanted)) {
    const server = serverOf(userId);
    let forServer = out.get(server);
    if (!forServer) out.set(server, (forServer = {}));
    forServer[userId] = v;
  }
  return out;
}

/**
 * POST /keys/query: local users from storage, other servers' users over federation (in parallel, each within
 * `timeoutMs`); a server that fails is listed in `failures`. Without `remote`, every other server is a failure.
 */
export async function queryKeys(
  deps: E2eeDeps,
  requester: string,
  serverName: string,
  wanted: Record<string, string[]>,
  remote?: RemoteKeys,
  timeoutMs: number = DEFAULT_REMOTE_KEYS_TIMEOUT_MS,
): Promise<JsonObject> {
  const { db } = deps.storage;
  const deviceKeys: Record<string, JsonObject> = {};
  const master: JsonObject = {};
  const selfSigning: JsonObject = {};
  const userSigning: JsonObject = {};
  const failures: JsonObject = {};
  const byServer = groupByServer(wanted);
  const local = Object.keys(byServer.get(serverName) ?? {});
  byServer.delete(serverName);
  const remoteDone = askServers(byServer, remote, failures, async (r, server, users) => {
    const res = await r.query(server, users, timeoutMs);
    for (const [userId, devices] of ownUsersOf(res.device_keys, server)) {
      if (!(userId in users)) continue;
      const kept: JsonObject = {};
      for (const [deviceId, keys] of Object.entries(devices))
        if (isJsonObject(keys) && keys.user_id === userId && keys.device_id === deviceId)
          kept[deviceId] = keys;
      deviceKeys[userId] = kept;
    }
    for (const [userId, key] of ownUsersOf(res.master_keys, server))
      if (userId in users) master[userId] = key;
    for (const [userId, key] of ownUsersOf(res.self_signing_keys, server))
      if (userId in users) selfSigning[userId] = key;
  });
  for (const userId of local) {
    const sigs = await storedSignatures(db, userId, requester);
    const devices: JsonObject = {};
    for (const row of await listDeviceKeys(db, userId, wanted[userId] ?? [])) {
      const obj = mergeSignatures(JSON.parse(row.key_json) as JsonObject, row.device_id, sigs);
      // As Synapse: `unsigned` is the server's (an uploaded one is not served), with the device's display name.
      devices[row.device_id] = {
        ...obj,
        unsigned: row.display_name === null ? {} : { device_display_name: row.display_name },
      };
    }
    deviceKeys[userId] = devices;
    for (const key of await getCrossSigningKeys(db, [userId])) {
      const obj = mergeSignatures(JSON.parse(key.key_json) as JsonObject, key.public_key, sigs);
      if (key.key_type === 'master') master[userId] = obj;
      else if (key.key_type === 'self_signing') selfSigning[userId] = obj;
      else if (key.key_type === 'user_signing' && userId === requester) userSigning[userId] = obj;
    }
  }
  await remoteDone;
  return {
    device_keys: deviceKeys,
    master_keys: master,
    self_signing_keys: selfSigning,
    user_signing_keys: userSigning,
    failures,
  };
}

/**
 * Asks every other server in `byServer` at once; a server that cannot be asked (no federation, an error, the
 * timeout) is listed in `failures` instead of failing the request.
 */
function askServers<T>(
  byServer: ReadonlyMap<string, T>,
  remote: RemoteKeys | undefined,
  failures: JsonObject,
  ask: (remote: RemoteKeys, server: string, users: T) => Promise<void>,
): Promise<void[]> {
  return Promise.all(
    [...byServer].map(async ([server, users]) => {
      if (!remote) {
        failures[server] = { status: 503, message: 'Federation is not available' };
        return;
      }
      try {
        await ask(remote, server, users);
      } catch (err) {
        failures[server] = failureOf(err);
      }
    }),
  );
}

/**
 * POST /keys/claim: one key per requested device; unknown users and devices are left out, as Synapse does. Other
 * servers' users are claimed over federation; a server that fails is listed in `failures`.
 */
export async function claimKeys(
  deps: E2eeDeps,
  serverName: string,
  wanted: Record<string, Record<string, string>>,
  remote?: RemoteKeys,
  timeoutMs: number = DEFAULT_REMOTE_KEYS_TIMEOUT_MS,
): Promise<JsonObject> {
  const { db } = deps.storage;
  const oneTimeKeys: Record<string, Record<string, JsonObject>> = {};
  const failures: JsonObject = {};
  const byServer = groupByServer(wanted);
  const local = byServer.get(serverName) ?? {};
  byServer.delete(serverName);
  const remoteDone = askServers(byServer, remote, failures, async (r, server, users) => {
    const res = await r.claim(server, users, timeoutMs);
    for (const [userId, devices] of ownUsersOf(res.one_time_keys, server)) {
      if (!(userId in users)) continue;
      const kept: Record<string, JsonObject> = {};
      for (const [deviceId, keys] of Object.entries(devices)) if (isJsonObject(keys)) kept[deviceId] = keys;
      oneTimeKeys[userId] = kept;
    }
  });
  for (const [userId, devices] of Object.entries(local)) {
    for (const [deviceId, algorithm] of Object.entries(devices)) {
      const key = await claimKey(db, userId, deviceId, algorithm);
      if (!key) continue;
      const forUser = (oneTimeKeys[userId] ??= {});
      forUser[deviceId] = { [`${algorithm}:${key.keyId}`]: JSON.parse(key.json) as unknown };
    }
  }
  await remoteDone;
  return { one_time_keys: oneTimeKeys, failures };
}
