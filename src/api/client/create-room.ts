/** POST /_matrix/client/v3/createRoom */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { isValidUserId, parseRoomAlias } from '../../rooms/identifiers.js';
import { checkContent } from '../../roomsvc/content.js';
import { createRoom } from '../../roomsvc/create-room.js';
import { changeMembership } from '../../roomsvc/membership.js';
import { isUniqueViolation } from '../../storage/dialect.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody } from '../validate.js';

const StateEvent = z.looseObject({
  type: z.string().min(1),
  state_key: z.string().default(''),
  content: z.unknown(),
});

const CreateRoomBody = z.looseObject({
  visibility: z.enum(['public', 'private']).default('private'),
  room_alias_name: z.string().min(1).optional(),
  name: z.string().max(255).optional(),
  topic: z.string().optional(),
  invite: z.array(z.string()).default([]),
  invite_3pid: z.array(z.unknown()).optional(),
  room_version: z.string().optional(),
  creation_content: z.unknown().optional(),
  initial_state: z.array(StateEvent).default([]),
  preset: z.enum(['private_chat', 'public_chat', 'trusted_private_chat']).optional(),
  is_direct: z.boolean().default(false),
  power_level_content_override: z.unknown().optional(),
});

export function createRoomRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { config, storage, writer, auth } = deps;
  const membershipDeps = {
    storage,
    writer,
    serverName: config.server_name,
    federation: deps.federation && { ...deps.federation, signingKey: deps.signingKey },
  };

  /** POST /_matrix/client/v3/createRoom */
  app.post('/_matrix/client/v3/createRoom', { preHandler: auth.requireUser }, async (req) => {
    const r = requester(req);
    const body = parseBody(CreateRoomBody, req.body);
    for (const u of body.invite) {
      if (!isValidUserId(u)) throw new MatrixError('M_INVALID_PARAM', `Invalid user id in invite: ${u}`);
    }
    if (body.invite_3pid && body.invite_3pid.length > 0) {
      throw new MatrixError('M_UNRECOGNIZED', 'Third-party invites are not supported', {}, 400);
    }
    let alias: string | undefined;
    if (body.room_alias_name !== undefined) {
      alias = `#${body.room_alias_name}:${config.server_name}`;
      if (body.room_alias_name.includes(':') || !parseRoomAlias(alias)) {
        throw new MatrixError('M_INVALID_PARAM', 'Invalid room_alias_name');
      }
      const taken = await storage.db
        .selectFrom('room_aliases')
        .select('alias')
        .where('alias', '=', alias)
        .executeTakeFirst();
      if (taken) throw new MatrixError('M_ROOM_IN_USE', 'Room alias already taken');
    }
    const initialState = body.initial_state.map((s, i) => ({
      type: s.type,
      state_key: s.state_key,
      content: checkContent(s.content, `initial_state[${i}].content`),
    }));
    const roomId = await createRoom(
      {
        storage,
        writer,
        serverName: config.server_name,
        inviteRemote:
          deps.federation &&
          ((roomId, userId, extra) =>
            changeMembership(membershipDeps, roomId, r.userId, userId, 'invite', extra)),
      },
      {
        creator: r.userId,
        visibility: body.visibility,
        preset: body.preset,
        name: body.name,
        topic: body.topic,
        roomAlias: alias,
        invite: body.invite.filter((u) => u !== r.userId),
        isDirect: body.is_direct,
        initialState,
        creationContent:
          body.creation_content === undefined ? {} : checkContent(body.creation_content, 'creation_content'),
        powerLevelOverride:
          body.power_level_content_override === undefined
            ? undefined
            : checkContent(body.power_level_content_override, 'power_level_content_override'),
        roomVersion: body.room_version ?? config.default_room_version,
      },
    );
    await storage.db.transaction().execute(async (trx) => {
      if (alias) {
        try {
          await trx
            .insertInto('room_aliases')
            .values({ alias, room_id: roomId, creator: r.userId, created_ts: Date.now() })
            .execute();
        } catch (err) {
          if (!isUniqueViolation(err)) throw err;
        }
      }
      if (body.visibility === 'public')
        await trx.updateTable('rooms').set({ is_public: 1 }).where('room_id', '=', roomId).execute();
    });
    return { room_id: roomId };
  });
}
