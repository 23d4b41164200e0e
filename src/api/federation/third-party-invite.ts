/**
 * Third-party invites over federation (server-server API "Third-party invites"): this server does not issue or
 * accept invites to third-party identifiers, so both endpoints answer a Matrix error saying so instead of a bare 404.
 * exchange_third_party_invite (a signed request from another server) is refused with 403 M_FORBIDDEN: this server
 * will not issue the invite. /3pid/onbind (called by identity servers, unauthenticated) answers 400 M_UNRECOGNIZED:
 * it has no pending third-party invites to deliver.
 */
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { MatrixError } from '../errors.js';

export function thirdPartyInviteRoutes(
  app: FastifyInstance,
  deps: { authenticate: preHandlerAsyncHookHandler },
): void {
  /** PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId} */
  app.put(
    '/_matrix/federation/v1/exchange_third_party_invite/:roomId',
    { preHandler: deps.authenticate },
    () => {
      throw new MatrixError(
        'M_FORBIDDEN',
        'This server does not support third-party invites: it cannot exchange them for invites',
      );
    },
  );

  /** PUT /_matrix/federation/v1/3pid/onbind */
  app.put('/_matrix/federation/v1/3pid/onbind', () => {
    throw new MatrixError(
      'M_UNRECOGNIZED',
      'This server does not support third-party invites: there is nothing to bind',
      {},
      400,
    );
  });
}
