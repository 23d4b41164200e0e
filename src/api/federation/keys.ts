/** The key API: GET /_matrix/key/v2/server, and the notary endpoints GET|POST /_matrix/key/v2/query. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { KeyRing } from '../../federation/keyring.js';
import { isValidServerName } from '../../rooms/identifiers.js';
import { invalidParam } from '../errors.js';
import { parseBody, parseParams, parseQuery } from '../validate.js';

export interface KeyRoutesDeps {
  keyRing: Pick<KeyRing, 'ownKeys' | 'notaryKeys'>;
}

/** Servers asked about in one notary query. */
export const MAX_NOTARY_SERVERS = 100;

const Timestamp = z.coerce.number().int().nonnegative();
const QueryParams = z.object({ serverName: z.string() });
const QueryQuery = z.looseObject({ minimum_valid_until_ts: Timestamp.optional() });
const QueryBody = z.looseObject({
  server_keys: z
    .record(
      z.string(),
      z.record(z.string(), z.looseObject({ minimum_valid_until_ts: z.number().int().optional() })),
    )
    .refine((o) => Object.keys(o).length <= MAX_NOTARY_SERVERS, `at most ${MAX_NOTARY_SERVERS} servers`),
});

export function keyRoutes(app: FastifyInstance, deps: KeyRoutesDeps): void {
  /** GET /_matrix/key/v2/server (and the deprecated /_matrix/key/v2/server/{keyId}, same answer) */
  app.get('/_matrix/key/v2/server', async () => deps.keyRing.ownKeys());
  app.get('/_matrix/key/v2/server/:keyId', async () => deps.keyRing.ownKeys());

  /** GET /_matrix/key/v2/query/{serverName} */
  app.get('/_matrix/key/v2/query/:serverName', async (req) => {
    const { serverName } = parseParams(QueryParams, req.params);
    if (!isValidServerName(serverName)) throw invalidParam(`Invalid server name: ${serverName}`);
    const { minimum_valid_until_ts: min } = parseQuery(QueryQuery, req.query);
    return { server_keys: await deps.keyRing.notaryKeys(serverName, min ?? Date.now()) };
  });

  /** POST /_matrix/key/v2/query */
  app.post('/_matrix/key/v2/query', async (req) => {
    const { server_keys: wanted } = parseBody(QueryBody, req.body);
    const now = Date.now();
    const answers = await Promise.all(
      Object.entries(wanted)
        .filter(([serverName]) => isValidServerName(serverName))
        .map(([serverName, criteria]) => {
          const mins = Object.values(criteria).map((c) => c.minimum_valid_until_ts ?? now);
          return deps.keyRing.notaryKeys(serverName, mins.length ? Math.max(...mins) : now);
        }),
    );
    return { server_keys: answers.flat() };
  });
}
