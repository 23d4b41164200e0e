/** Server-side key backups (client-server API "End-to-End Encryption > Server-side key backups"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  createVersion,
  deleteKeys,
  deleteVersion,
  getKeys,
  parseVersion,
  putKeys,
  updateVersion,
  versionInfo,
  type KeyBackupData,
} from '../../e2ee/key-backup.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseBody, parseQuery } from '../validate.js';

/**
 * Any JSON value: what `auth_data` and `session_data` hold depends on the backup's algorithm, which
 * e2ee/key-backup.ts checks (SyTest backs up `m.megolm_backup.v1` with plain strings, which Synapse accepts).
 */
const AnyJson = z.unknown();
const VersionBody = z.looseObject({ algorithm: z.string().min(1), auth_data: AnyJson });
const UpdateBody = z.looseObject({
  algorithm: z.string().min(1),
  auth_data: AnyJson,
  version: z.string().optional(),
});
const KeyData = z.looseObject({
  first_message_index: z.number().int().min(0),
  forwarded_count: z.number().int().min(0),
  is_verified: z.boolean(),
  session_data: AnyJson,
});
const Sessions = z.looseObject({ sessions: z.record(z.string(), KeyData) });
const AllKeys = z.looseObject({ rooms: z.record(z.string(), Sessions) });
const VersionQuery = z.looseObject({ version: z.string() });

type Data = Record<string, Record<string, KeyBackupData>>;

export function keyBackupRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };
  const db = deps.storage.db;
  const base = '/_matrix/client/v3/room_keys';
  const version = (query: unknown): number | undefined =>
    parseVersion(parseQuery(VersionQuery, query).version);
  type P = { Params: { roomId?: string; sessionId?: string; version?: string } };

  /** POST /_matrix/client/v3/room_keys/version */
  app.post(`${base}/version`, guard, async (req) => {
    const body = parseBody(VersionBody, req.body);
    return {
      version: await createVersion(db, requester(req).userId, body.algorithm, body.auth_data),
    };
  });

  /** GET /_matrix/client/v3/room_keys/version */
  app.get(`${base}/version`, guard, async (req) => versionInfo(db, requester(req).userId));

  /** GET /_matrix/client/v3/room_keys/version/{version} */
  app.get<P>(`${base}/version/:version`, guard, async (req) =>
    versionInfo(db, requester(req).userId, parseVersion(req.params.version) ?? -1),
  );

  /** PUT /_matrix/client/v3/room_keys/version/{version} */
  app.put<P>(`${base}/version/:version`, guard, async (req) => {
    const body = parseBody(UpdateBody, req.body);
    await updateVersion(db, requester(req).userId, parseVersion(req.params.version), {
      algorithm: body.algorithm,
      auth_data: body.auth_data,
      version: body.version,
    });
    return {};
  });

  /** DELETE /_matrix/client/v3/room_keys/version/{version} */
  app.delete<P>(`${base}/version/:version`, guard, async (req) => {
    await deleteVersion(db, requester(req).userId, parseVersion(req.params.version));
    return {};
  });

  /** PUT /_matrix/client/v3/room_keys/keys */
  app.put(`${base}/keys`, guard, async (req) => {
    const body = parseBody(AllKeys, req.body);
    const data: Data = {};
    for (const [roomId, room] of Object.entries(body.rooms)) data[roomId] = room.sessions as Data[string];
    return putKeys(db, requester(req).userId, version(req.query), data);
  });

  /** PUT /_matrix/client/v3/room_keys/keys/{roomId} */
  app.put<P>(`${base}/keys/:roomId`, guard, async (req) => {
    const body = parseBody(Sessions, req.body);
    const roomId = req.params.roomId ?? '';
    return putKeys(db, requester(req).userId, version(req.query), {
      [roomId]: body.sessions as Data[string],
    });
  });

  /** PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId} */
  app.put<P>(`${base}/keys/:roomId/:sessionId`, guard, async (req) => {
    const body = parseBody(KeyData, req.body) as KeyBackupData;
    const roomId = req.params.roomId ?? '';
    const sessionId = req.params.sessionId ?? '';
    return putKeys(db, requester(req).userId, version(req.query), { [roomId]: { [sessionId]: body } });
  });

  /** GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]] */
  app.get(`${base}/keys`, guard, async (req) => getKeys(db, requester(req).userId, version(req.query)));
  app.get<P>(`${base}/keys/:roomId`, guard, async (req) =>
    getKeys(db, requester(req).userId, version(req.query), req.params.roomId),
  );
  app.get<P>(`${base}/keys/:roomId/:sessionId`, guard, async (req) =>
    getKeys(db, requester(req).userId, version(req.query), req.params.roomId, req.params.sessionId),
  );

  /** DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]] */
  app.delete(`${base}/keys`, guard, async (req) => deleteKeys(db, requester(req).userId, version(req.query)));
  app.delete<P>(`${base}/keys/:roomId`, guard, async (req) =>
    deleteKeys(db, requester(req).userId, version(req.query), req.params.roomId),
  );
  app.delete<P>(`${base}/keys/:roomId/:sessionId`, guard, async (req) =>
    deleteKeys(db, requester(req).userId, version(req.query), req.params.roomId, req.params.sessionId),
  );
}
