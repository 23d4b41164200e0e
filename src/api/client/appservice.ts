/**
 * Application service endpoints of the client-server API ("Client-Server API Extensions"): ping, and the
 * published room directories of their third-party networks.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppServiceRequestError, appServiceRequest } from '../../appservice/http.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody } from '../validate.js';
import { setAppServiceRoomListed } from '../../storage/appservice-directory.js';

const PingBody = z.looseObject({ transaction_id: z.string().optional() });
const PING_TIMEOUT_MS = 15_000;
const VisibilityBody = z.looseObject({ visibility: z.enum(['public', 'private']) });

export function appServiceRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId} */
  app.put<{ Params: { networkId: string; roomId: string } }>(
    '/_matrix/client/v3/directory/list/appservice/:networkId/:roomId',
    guard,
    async (req) => {
      const asId = requester(req).appServiceId;
      if (asId === undefined)
        throw new MatrixError('M_FORBIDDEN', 'Only application services can edit their published room list');
      const body = parseBody(VisibilityBody, req.body);
      if (!(await deps.writer.head(req.params.roomId)))
        throw new MatrixError('M_NOT_FOUND', 'Room not found');
      await setAppServiceRoomListed(
        deps.storage.db,
        asId,
        req.params.networkId,
        req.params.roomId,
        body.visibility === 'public',
      );
      return {};
    },
  );

  /** POST /_matrix/client/v1/appservice/{appserviceId}/ping */
  app.post<{ Params: { appserviceId: string } }>(
    '/_matrix/client/v1/appservice/:appserviceId/ping',
    guard,
    async (req) => {
      const body = parseBody(PingBody, req.body ?? {});
      const as = deps.appServices?.byId(req.params.appserviceId);
      if (!as || requester(req).appServiceId !== as.id)
        throw new MatrixError(
          'M_FORBIDDEN',
          'Provided access token is not valid for the requested application service',
        );
      const started = performance.now();
      let status: number;
      let answer: unknown;
      try {
        ({ status, body: answer } = await appServiceRequest(as, {
          method: 'POST',
          path: '/_matrix/app/v1/ping',
          body: body.transaction_id === undefined ? {} : { transaction_id: body.transaction_id },
          timeoutMs: PING_TIMEOUT_MS,
        }));
      } catch (err) {
        if (!(err instanceof AppServiceRequestError)) throw err;
        if (err.kind === 'url_not_set')
          throw new MatrixError('M_URL_NOT_SET', 'Application service URL is not configured');
        if (err.kind === 'timeout')
          throw new MatrixError(
            'M_CONNECTION_TIMEOUT',
            'Connection to application service timed out',
            {},
            504,
          );
        throw new MatrixError('M_CONNECTION_FAILED', 'Failed to connect to application service', {}, 502);
      }
      if (status < 200 || status >= 300) {
        throw new MatrixError(
          'M_BAD_STATUS',
          `Ping returned status ${status}`,
          { status, body: answer === null ? '' : JSON.stringify(answer) },
          502,
        );
      }
      return { duration_ms: Math.round(performance.now() - started) };
    },
  );
}
