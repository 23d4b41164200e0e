/**
 * The client side of the federation key endpoints: other servers' device keys (`POST /user/keys/query`) and
 * one-time keys (`POST /user/keys/claim`), each within a timeout, for the client /keys/query and /keys/claim.
 */
import type { RemoteKeys } from '../e2ee/keys.js';
import type { JsonObject } from '../rooms/event.js';
import { isJsonObject } from '../util/validate.js';
import { FederationError, type FederationClient } from './client.js';

/** Resolves with `p`, or rejects with a 503 FederationError after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FederationError(`${what} timed out after ${ms} ms`, 503)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function asObject(body: unknown, what: string): JsonObject {
  if (!isJsonObject(body))
    throw new FederationError(`${what} answered with a body that is not an object`, 502);
  return body;
}

export function remoteKeys(client: Pick<FederationClient, 'post'>): RemoteKeys {
  return {
    async query(server, deviceKeys, timeoutMs) {
      const what = `key query to ${server}`;
      const res = await within(
        client.post(server, '/_matrix/federation/v1/user/keys/query', { device_keys: deviceKeys }),
        timeoutMs,
        what,
      );
      return asObject(res.body, what);
    },
    async claim(server, oneTimeKeys, timeoutMs) {
      const what = `key claim to ${server}`;
      const res = await within(
        client.post(server, '/_matrix/federation/v1/user/keys/claim', { one_time_keys: oneTimeKeys }),
        timeoutMs,
        what,
      );
      return asObject(res.body, what);
    },
  };
}
