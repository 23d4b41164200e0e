/**
 * The key ring: this server's published keys, and other servers' verify keys, from the database cache or fetched
 * through trusted_key_servers (notaries) and then from the server itself, as Synapse orders them. Fetched keys are
 * stored before they are used, old keys included, so a restart or an unreachable server does not lose them.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { SigningKey } from '../keys/signing-key.js';
import type { JsonObject } from '../rooms/event.js';
import { signJson } from '../rooms/signing.js';
import type { Database } from '../storage/schema.js';
import {
  getKeyResponse,
  getVerifyKey,
  storeKeyResponse,
  storeVerifyKeys,
  type StoredVerifyKey,
} from '../storage/server-keys.js';
import type { FederationResponse, RequestOptions } from './client.js';
import {
  checkNotarySignature,
  ownKeyDocument,
  parseKeyResponse,
  type ParsedKeyResponse,
} from './server-keys.js';

/** What the key ring needs of the federation client. */
export interface KeyTransport {
  get(destination: string, path: string, opts?: RequestOptions): Promise<FederationResponse>;
  post(destination: string, path: string, body: unknown, opts?: RequestOptions): Promise<FederationResponse>;
}

export interface TrustedKeyServer {
  server_name: string;
  verify_keys?: Record<string, string> | undefined;
}

export interface KeyRingOptions {
  serverName: string;
  signingKey: SigningKey;
  oldSigningKeys: Record<string, { key: string; expired_ts: number }>;
  /** key_refresh_interval: how long published keys stay valid. */
  keyRefreshIntervalMs: number;
  db: Kysely<Database>;
  transport: KeyTransport;
  trustedKeyServers: readonly TrustedKeyServer[];
  log?: Logger;
  now?: () => number;
}

/** After a fetch from a server failed to produce a wanted key, the server is not asked again for this long. */
export const KEY_FETCH_RETRY_MS = 10_000;
const KEY_RESPONSE_MAX_BYTES = 512 * 1024;

export class KeyRing {
  readonly #o: KeyRingOptions;
  readonly #now: () => number;
  #own: { json: JsonObject; refreshAt: number } | undefined;
  readonly #fetching = new Map<string, Promise<void>>();
  readonly #lastFetch = new Map<string, number>();

  constructor(opts: KeyRingOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** The signed document served at /_matrix/key/v2/server, renewed when half of its validity has passed. */
  ownKeys(): JsonObject {
    const now = this.#now();
    if (!this.#own || now >= this.#own.refreshAt) {
      const { keyId, seed, publicKeyBase64 } = this.#o.signingKey;
      const interval = this.#o.keyRefreshIntervalMs;
      const json = ownKeyDocument(
        { serverName: this.#o.serverName, keyId, seed, publicKeyBase64, oldKeys: this.#o.oldSigningKeys },
        now + interval,
      );
      this.#own = { json, refreshAt: now + interval / 2 };
    }
    return this.#own.json;
  }

  /**
   * The public key (unpadded base64) `keyId` of `serverName`, usable for a signature that must be valid at
   * `minValidUntilTs` (now for requests; pass 0 to ignore validity, as room versions 1-4 do); null if unknown.
   */
  async getVerifyKey(
    serverName: string,
    keyId: string,
    minValidUntilTs = this.#now(),
  ): Promise<string | null> {
    if (serverName === this.#o.serverName) return this.#ownVerifyKey(keyId, minValidUntilTs);
    const usable = (k: StoredVerifyKey | undefined): k is StoredVerifyKey =>
      k !== undefined && k.valid_until_ts >= minValidUntilTs;
    const cached = await getVerifyKey(this.#o.db, serverName, keyId);
    if (usable(cached)) return cached.verify_key;
    const last = this.#lastFetch.get(serverName);
    if (last !== undefined && this.#now() - last < KEY_FETCH_RETRY_MS && !this.#fetching.has(serverName)) {
      // A fetch that finished while the cache was being read may have stored the key: read it once more.
      const again = await getVerifyKey(this.#o.db, serverName, keyId);
      return usable(again) ? again.verify_key : null;
    }
    await this.#fetchKeys(serverName, keyId, minValidUntilTs);
    const fetched = await getVerifyKey(this.#o.db, serverName, keyId);
    return usable(fetched) ? fetched.verify_key : null;
  }

  /**
   * A notary's answer for `serverName`: its key document, fetched from the server when the cached one is past half
   * its life or not valid until `minValidUntilTs` (at most once per KEY_FETCH_RETRY_MS, whatever callers ask); the
   * cached one when the server cannot be reached; signed by this server. Empty when nothing is known.
   */
  async notaryKeys(serverName: string, minValidUntilTs: number): Promise<JsonObject[]> {
    if (serverName === this.#o.serverName) return [this.ownKeys()];
    const now = this.#now();
    let stored = await getKeyResponse(this.#o.db, serverName);
    const fresh =
      stored !== undefined &&
      stored.valid_until_ts >= minValidUntilTs &&
      now < stored.fetched_ts + (stored.valid_until_ts - stored.fetched_ts) / 2;
    const last = this.#lastFetch.get(serverName);
    const triedRecently = last !== undefined && now - last < KEY_FETCH_RETRY_MS;
    if (!fresh && !triedRecently) {
      await this.#dedupe(serverName, () => this.#fetchDirect(serverName)).catch((err: Error) =>
        this.#o.log?.info(
          { server: serverName, err: err.message },
          'notary: cannot fetch keys; serving the cache',
        ),
      );
      stored = await getKeyResponse(this.#o.db, serverName);
    }
    if (!stored) return [];
    const { keyId, seed } = this.#o.signingKey;
    return [signJson(JSON.parse(stored.json) as JsonObject, this.#o.serverName, keyId, seed)];
  }

  #ownVerifyKey(keyId: string, minValidUntilTs: number): string | null {
    if (keyId === this.#o.signingKey.keyId) return this.#o.signingKey.publicKeyBase64;
    const old = this.#o.oldSigningKeys[keyId];
    return old && old.expired_ts >= minValidUntilTs ? old.key : null;
  }

  #dedupe(serverName: string, job: () => Promise<void>): Promise<void> {
    const running = this.#fetching.get(serverName);
    if (running) return running;
    const p = job().finally(() => {
      this.#fetching.delete(serverName);
      this.#lastFetch.set(serverName, this.#now());
    });
    this.#fetching.set(serverName, p);
    return p;
  }

  /** Notaries first, then the server itself, until the key is stored with the validity asked for. */
  #fetchKeys(serverName: string, keyId: string, minValidUntilTs: number): Promise<void> {
    return this.#dedupe(serverName, async () => {
      const satisfied = async (): Promise<boolean> => {
        const k = await getVerifyKey(this.#o.db, serverName, keyId);
        return k !== undefined && k.valid_until_ts >= minValidUntilTs;
      };
      for (const notary of this.#o.trustedKeyServers) {
        if (notary.server_name === serverName) continue;
        try {
          await this.#fetchFromNotary(notary, serverName, keyId, minValidUntilTs);
          if (await satisfied()) return;
        } catch (err) {
          this.#o.log?.info(
            { server: serverName, notary: notary.server_name, err: (err as Error).message },
            'key query failed',
          );
        }
      }
      try {
        await this.#fetchDirect(serverName);
      } catch (err) {
        this.#o.log?.info({ server: serverName, err: (err as Error).message }, 'key fetch failed');
      }
    });
  }

  async #fetchDirect(serverName: string): Promise<void> {
    const res = await this.#o.transport.get(serverName, '/_matrix/key/v2/server', {
      signed: false,
      maxBytes: KEY_RESPONSE_MAX_BYTES,
    });
    const now = this.#now();
    const parsed = parseKeyResponse(res.body, serverName, now);
    await this.#store(parsed, serverName, now);
    await storeKeyResponse(this.#o.db, {
      server_name: serverName,
      json: JSON.stringify(res.body),
      valid_until_ts: parsed.validUntilTs,
      fetched_ts: now,
    });
  }

  async #fetchFromNotary(
    notary: TrustedKeyServer,
    serverName: string,
    keyId: string,
    minValidUntilTs: number,
  ): Promise<void> {
    const res = await this.#o.transport.post(
      notary.server_name,
      '/_matrix/key/v2/query',
      { server_keys: { [serverName]: { [keyId]: { minimum_valid_until_ts: minValidUntilTs } } } },
      { signed: false, maxBytes: KEY_RESPONSE_MAX_BYTES },
    );
    const list = (res.body as { server_keys?: unknown } | undefined)?.server_keys;
    if (!Array.isArray(list)) throw new Error(`notary ${notary.server_name} answered without server_keys`);
    const now = this.#now();
    for (const entry of list as unknown[]) {
      if ((entry as JsonObject | null)?.['server_name'] !== serverName) continue;
      checkNotarySignature(entry as JsonObject, notary.server_name, notary.verify_keys);
      await this.#store(parseKeyResponse(entry, serverName, now), notary.server_name, now);
    }
  }

  async #store(parsed: ParsedKeyResponse, from: string, now: number): Promise<void> {
    await storeVerifyKeys(
      this.#o.db,
      parsed.keys.map((k) => ({
        server_name: parsed.serverName,
        key_id: k.keyId,
        verify_key: k.key,
        valid_until_ts: k.validUntilTs,
        expired_ts: k.expiredTs,
        from_server: from,
        fetched_ts: now,
      })),
    );
  }
}
