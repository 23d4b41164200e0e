/**
 * Inbound request authentication (server-server API "Request Authentication"): the X-Matrix Authorization header is
 * parsed, its destination must be this server, the origin's key is fetched through the key ring, and the signature
 * over method, URI, origin, destination and body is checked. Anything else is 401 M_UNAUTHORIZED.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { KeyRing } from '../../federation/keyring.js';
import { parseXMatrix, verifyRequest } from '../../federation/x-matrix.js';
import { isValidServerName } from '../../rooms/identifiers.js';
import { MatrixError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated origin server of a federation request ('' before authentication). */
    federationOrigin: string;
  }
}

export interface FederationAuthDeps {
  serverName: string;
  keyRing: Pick<KeyRing, 'getVerifyKey'>;
  /** federation_domain_whitelist */
  allowsServer(serverName: string): boolean;
}

const unauthorized = (message: string): MatrixError => new MatrixError('M_UNAUTHORIZED', message);

/** Verifies a request's X-Matrix signature; returns the origin server name or throws 401/403. */
export async function authenticateFederationRequest(
  req: FastifyRequest,
  deps: FederationAuthDeps,
): Promise<string> {
  const header = req.headers.authorization;
  if (!header) throw unauthorized('Missing Authorization headers');
  const params = parseXMatrix(header);
  if (!params) throw unauthorized('Malformed X-Matrix Authorization header');
  if (!isValidServerName(params.origin)) throw unauthorized('Invalid origin in X-Matrix header');
  if (params.destination !== undefined && params.destination !== deps.serverName)
    throw unauthorized(`Request was sent to ${params.destination}, not to this server (${deps.serverName})`);
  if (!deps.allowsServer(params.origin))
    throw new MatrixError('M_FORBIDDEN', `Federation denied with ${params.origin}`);
  const key = await deps.keyRing.getVerifyKey(params.origin, params.key);
  if (!key) throw unauthorized(`Cannot find key ${params.key} of ${params.origin}`);
  const signed = {
    method: req.method,
    uri: req.originalUrl,
    origin: params.origin,
    destination: deps.serverName,
    content: Buffer.isBuffer(req.body) ? undefined : req.body,
  };
  if (!verifyRequest(signed, params, key)) throw unauthorized(`Invalid signature by ${params.origin}`);
  return params.origin;
}

/** Adds `req.federationOrigin` to the app and returns the preHandler that authenticates federation requests. */
export function federationAuth(app: FastifyInstance, deps: FederationAuthDeps) {
  if (!app.hasRequestDecorator('federationOrigin')) app.decorateRequest('federationOrigin', '');
  return async (req: FastifyRequest): Promise<void> => {
    req.federationOrigin = await authenticateFederationRequest(req, deps);
  };
}
