/**
 * Room tagging (client-server API "Room Tagging"). Tags live in the m.tag room account data event
 * (`{ tags: { name: { order? } } }`), so /sync delivers them with the rest of the room's account data.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isValidRoomId } from '../../rooms/identifiers.js';
import { KeyedQueue } from '../../util/keyed-queue.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden, invalidParam } from '../errors.js';
import { parseBody, parseParams } from '../validate.js';
import { readAccountData, writeAccountData } from './account-data.js';

const MAX_TAG_BYTES = 255;

const RoomParams = z.object({ userId: z.string(), roomId: z.string() });
const TagParams = RoomParams.extend({ tag: z.string().min(1) });
/** Extra fields are kept, as Synapse stores the body as given. */
const TagBody = z.looseObject({ order: z.number().min(0).max(1).optional() });

type TagMap = Record<string, Record<string, unknown>>;

function checkRequest(req: FastifyRequest, params: { userId: string; roomId: string }): void {
  if (params.userId !== requester(req).userId) throw forbidden('Cannot access the tags of other users');
  if (!isValidRoomId(params.roomId)) throw invalidParam(`${params.roomId} is not a valid room ID`);
}

export function tagRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'storage' | 'auth' | 'notifier'>): void {
  const guard = { preHandler: deps.auth.requireUser };
  // Read-modify-write of one m.tag event: concurrent changes of one user's tags on one room run in turn.
  const queue = new KeyedQueue();

  const tagsOf = async (userId: string, roomId: string): Promise<TagMap> => {
    const content = await readAccountData(deps.storage, userId, roomId, 'm.tag');
    const tags = content?.tags;
    // A prototype-less copy: a tag may be named `__proto__` or `constructor`.
    const out = Object.create(null) as TagMap;
    if (typeof tags === 'object' && tags !== null && !Array.isArray(tags)) Object.assign(out, tags);
    return out;
  };

  const update = (userId: string, roomId: string, change: (tags: TagMap) => boolean): Promise<void> =>
    queue.run(`${userId}\u0000${roomId}`, async () => {
      const tags = await tagsOf(userId, roomId);
      if (change(tags)) await writeAccountData(deps, userId, roomId, 'm.tag', { tags });
    });

  /** GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags */
  app.get('/_matrix/client/v3/user/:userId/rooms/:roomId/tags', guard, async (req) => {
    const params = parseParams(RoomParams, req.params);
    checkRequest(req, params);
    return { tags: await tagsOf(params.userId, params.roomId) };
  });

  /** PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag} */
  app.put('/_matrix/client/v3/user/:userId/rooms/:roomId/tags/:tag', guard, async (req) => {
    const params = parseParams(TagParams, req.params);
    checkRequest(req, params);
    if (Buffer.byteLength(params.tag) > MAX_TAG_BYTES) {
      throw invalidParam(`Tag names must not exceed ${MAX_TAG_BYTES} bytes`);
    }
    const body = parseBody(TagBody, req.body);
    await update(params.userId, params.roomId, (tags) => {
      tags[params.tag] = body;
      return true;
    });
    return {};
  });

  /** DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag} */
  app.delete('/_matrix/client/v3/user/:userId/rooms/:roomId/tags/:tag', guard, async (req) => {
    const params = parseParams(TagParams, req.params);
    checkRequest(req, params);
    await update(params.userId, params.roomId, (tags) => {
      if (!Object.hasOwn(tags, params.tag)) return false;
      delete tags[params.tag];
      return true;
    });
    return {};
  });
}
