/** Client config (client-server API "Client Config"): global and per-room account data. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { effectivePushRules } from '../../push/default-rules.js';
import { isValidRoomId } from '../../rooms/identifiers.js';
import type { Notifier } from '../../sync/notifier.js';
import type { Storage } from '../../storage/db.js';
import { getAccountData, putAccountData } from '../../storage/account-data.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError, forbidden, invalidParam, notFound } from '../errors.js';
import { isJsonObject, parseParams } from '../validate.js';

/** Types the server manages; clients read them as normal but cannot set them here (spec: 405 M_BAD_JSON). */
const SERVER_MANAGED_TYPES = new Set(['m.fully_read', 'm.push_rules']);

/** Global account data is stored with this room id. */
export const GLOBAL_ROOM = '';

const GlobalParams = z.object({ userId: z.string(), type: z.string().min(1) });
const RoomParams = z.object({ userId: z.string(), roomId: z.string(), type: z.string().min(1) });

/** Writes one account data event, stamped with a fresh stream position so /sync picks it up. */
export async function writeAccountData(
  deps: { storage: Pick<Storage, 'db' | 'stream'>; notifier: Notifier },
  userId: string,
  roomId: string,
  type: string,
  content: Record<string, unknown>,
): Promise<void> {
  const json = JSON.stringify(content);
  await deps.storage.stream.withPosition((streamPos) =>
    putAccountData(deps.storage.db, { userId, roomId, type, content: json, streamPos }),
  );
  deps.notifier.notifyUsers([userId]);
}

/** The account data content of `type`, or undefined when unset. */
export async function readAccountData(
  storage: Pick<Storage, 'db'>,
  userId: string,
  roomId: string,
  type: string,
): Promise<Record<string, unknown> | undefined> {
  const json = await getAccountData(storage.db, userId, roomId, type);
  return json === undefined ? undefined : (JSON.parse(json) as Record<string, unknown>);
}

/**
 * The path's room id, checked against the room id grammar only. Whether the room exists is not checked: there is
 * no room store to ask yet, and account data for a room the user has not joined is harmless.
 */
function roomIdOf(roomId: string): string {
  if (!isValidRoomId(roomId)) throw invalidParam(`${roomId} is not a valid room ID`);
  return roomId;
}

function ownUser(req: FastifyRequest, userId: string, action: 'add' | 'get'): void {
  if (userId !== requester(req).userId) throw forbidden(`Cannot ${action} account data for other users`);
}

function contentOf(type: string, body: unknown): Record<string, unknown> {
  if (SERVER_MANAGED_TYPES.has(type)) {
    throw new MatrixError('M_BAD_JSON', `Cannot set ${type} through this API`, {}, 405);
  }
  if (!isJsonObject(body)) throw new MatrixError('M_NOT_JSON', 'Content must be a JSON object');
  return body;
}

export function accountDataRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'storage' | 'auth' | 'notifier'>,
): void {
  const guard = { preHandler: deps.auth.requireUser };
  const { storage } = deps;

  /** PUT /_matrix/client/v3/user/{userId}/account_data/{type} */
  app.put('/_matrix/client/v3/user/:userId/account_data/:type', guard, async (req) => {
    const { userId, type } = parseParams(GlobalParams, req.params);
    ownUser(req, userId, 'add');
    await writeAccountData(deps, userId, GLOBAL_ROOM, type, contentOf(type, req.body));
    return {};
  });

  /** GET /_matrix/client/v3/user/{userId}/account_data/{type} */
  app.get('/_matrix/client/v3/user/:userId/account_data/:type', guard, async (req) => {
    const { userId, type } = parseParams(GlobalParams, req.params);
    ownUser(req, userId, 'get');
    const content = await readAccountData(storage, userId, GLOBAL_ROOM, type);
    // The push rules are served whole, server defaults included, even before the user changed any.
    if (type === 'm.push_rules') return { global: effectivePushRules(content, userId) };
    if (!content) throw notFound('Account data not found');
    return content;
  });

  /** PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type} */
  app.put('/_matrix/client/v3/user/:userId/rooms/:roomId/account_data/:type', guard, async (req) => {
    const { userId, roomId, type } = parseParams(RoomParams, req.params);
    ownUser(req, userId, 'add');
    const room = roomIdOf(roomId);
    await writeAccountData(deps, userId, room, type, contentOf(type, req.body));
    return {};
  });

  /** GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type} */
  app.get('/_matrix/client/v3/user/:userId/rooms/:roomId/account_data/:type', guard, async (req) => {
    const { userId, roomId, type } = parseParams(RoomParams, req.params);
    ownUser(req, userId, 'get');
    const content = await readAccountData(storage, userId, roomIdOf(roomId), type);
    if (!content) throw notFound('Room account data not found');
    return content;
  });
}
