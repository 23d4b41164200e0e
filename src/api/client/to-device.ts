/** Send-to-device messaging (client-server API "Send-to-Device messaging"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { sendToDevice } from '../../e2ee/to-device.js';
import type { JsonObject } from '../../rooms/event.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseBody, parseParams } from '../validate.js';

const Params = z.object({ eventType: z.string().min(1).max(255), txnId: z.string().min(1).max(255) });
const Body = z.looseObject({
  messages: z.record(z.string(), z.record(z.string(), z.record(z.string(), z.unknown()))),
});

export function toDeviceRoutes(app: FastifyInstance, deps: ApiDeps): void {
  /** PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId} */
  app.put(
    '/_matrix/client/v3/sendToDevice/:eventType/:txnId',
    { preHandler: deps.auth.requireUser },
    async (req) => {
      const r = requester(req);
      const { eventType, txnId } = parseParams(Params, req.params);
      const body = parseBody(Body, req.body);
      await sendToDevice(
        { ...deps, serverName: deps.config.server_name },
        { userId: r.userId, deviceId: r.deviceId },
        eventType,
        txnId,
        body.messages as Record<string, Record<string, JsonObject>>,
      );
      return {};
    },
  );
}
