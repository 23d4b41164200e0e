/** Room upgrades (client-server API "Room Upgrades"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { RoomUpgrader } from '../../roomsvc/upgrade.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseBody } from '../validate.js';

const UpgradeBody = z.looseObject({
  new_version: z.string(),
  additional_creators: z.array(z.string()).optional(),
});

export function upgradeRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { storage, writer, auth, config } = deps;
  const upgrader = new RoomUpgrader({ storage, writer, serverName: config.server_name, log: app.log });

  /** POST /_matrix/client/v3/rooms/{roomId}/upgrade */
  app.post<{ Params: { roomId: string } }>(
    '/_matrix/client/v3/rooms/:roomId/upgrade',
    { preHandler: auth.requireUser },
    async (req) => {
      const body = parseBody(UpgradeBody, req.body);
      const replacement = await upgrader.upgrade(
        requester(req).userId,
        req.params.roomId,
        body.new_version,
        body.additional_creators,
      );
      return { replacement_room: replacement };
    },
  );
}
