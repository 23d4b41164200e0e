/**
 * Server keys between real Hearths on loopback over TLS: the published document, direct fetching and caching, the
 * notary endpoints (signed by the notary, answering from its cache while the server is down), fetching through
 * trusted_key_servers, and the key cache surviving a restart. Every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JsonObject } from '../../src/rooms/event.js';
import {
  publicKeyBase64FromSeed,
  generateSigningSeed,
  verifyJsonSignature,
} from '../../src/rooms/signing.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';

const OLD_SEED = generateSigningSeed();
const OLD_KEY = publicKeyBase64FromSeed(OLD_SEED);

function keyOf(s: FederatedServer): { keyId: string; key: string } {
  return { keyId: s.hs.signingKey.keyId, key: s.hs.signingKey.publicKeyBase64 };
}

for (const engine of ENGINES) {
  describe(`${engine}: federation keys`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let c: FederatedServer;
    before(async () => {
      a = await startFederatedServer(engine);
      b = await startFederatedServer(engine, {
        old_signing_keys: { 'ed25519:old1': { key: OLD_KEY, expired_ts: 1_000 } },
        key_refresh_interval: '2h',
      });
      c = await startFederatedServer(engine);
    });
    after(async () => {
      await Promise.all([a, b, c].map((s) => s?.close()));
    });

    it('publishes a self-signed key document with valid_until_ts and old_verify_keys', async () => {
      const res = await a.hs.federation.client.get(b.serverName, '/_matrix/key/v2/server', { signed: false });
      const doc = res.body as JsonObject;
      const { keyId, key } = keyOf(b);
      assert.equal(doc['server_name'], b.serverName);
      assert.deepEqual(doc['verify_keys'], { [keyId]: { key } });
      assert.deepEqual(doc['old_verify_keys'], { 'ed25519:old1': { key: OLD_KEY, expired_ts: 1_000 } });
      const until = doc['valid_until_ts'] as number;
      assert.ok(Math.abs(until - (Date.now() + 2 * 3_600_000)) < 60_000, `valid_until_ts ${until}`);
      assert.ok(verifyJsonSignature(doc, b.serverName, keyId, key), 'signed with the server key');
      assert.equal(res.headers['content-type']?.split(';')[0], 'application/json');
    });

    it('fetches a key directly, stores it with its validity and the old keys, and serves it from the cache', async () => {
      const { keyId, key } = keyOf(b);
      assert.equal(await a.hs.federation.keyRing.getVerifyKey(b.serverName, keyId), key);
      const rows = await a.hs.storage.db
        .selectFrom('server_verify_keys')
        .selectAll()
        .where('server_name', '=', b.serverName)
        .orderBy('key_id')
        .execute();
      assert.deepEqual(
        rows.map((r) => [r.key_id, r.verify_key, r.expired_ts, r.from_server]),
        [
          [keyId, key, null, b.serverName],
          ['ed25519:old1', OLD_KEY, 1_000, b.serverName],
        ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
      );
      const current = rows.find((r) => r.key_id === keyId);
      assert.ok(current && current.valid_until_ts > Date.now() + 3_600_000);
      // The old key is only good for signatures before it expired; an unknown key id is not invented.
      assert.equal(await a.hs.federation.keyRing.getVerifyKey(b.serverName, 'ed25519:old1', 500), OLD_KEY);
      assert.equal(await a.hs.federation.keyRing.getVerifyKey(b.serverName, 'ed25519:old1'), null);
      assert.equal(await a.hs.federation.keyRing.getVerifyKey(b.serverName, 'ed25519:nope'), null);
    });

    it('answers notary queries (POST and GET) signed by itself and by the server, from its cache when the server is down', async () => {
      const { keyId, key } = keyOf(c);
      const post = await b.hs.federation.client.post(
        a.serverName,
        '/_matrix/key/v2/query',
        { server_keys: { [c.serverName]: { [keyId]: { minimum_valid_until_ts: Date.now() } } } },
        { signed: false },
      );
      const list = (post.body as { server_keys: JsonObject[] }).server_keys;
      assert.equal(list.length, 1);
      const doc = list[0] as JsonObject;
      assert.equal(doc['server_name'], c.serverName);
      assert.deepEqual(doc['verify_keys'], { [keyId]: { key } });
      assert.ok(verifyJsonSignature(doc, c.serverName, keyId, key), "the server's own signature");
      assert.ok(
        verifyJsonSignature(doc, a.serverName, keyOf(a).keyId, keyOf(a).key),
        "the notary's signature",
      );

      const empty = await b.hs.federation.client.post(a.serverName, '/_matrix/key/v2/query', {
        server_keys: {},
      });
      assert.deepEqual(empty.body, { server_keys: [] });

      // C goes away: A still answers from the response it fetched, and B learns C's key through A.
      await c.stop();
      const path = `/_matrix/key/v2/query/${encodeURIComponent(c.serverName)}`;
      const get = await b.hs.federation.client.get(a.serverName, path, {
        query: { minimum_valid_until_ts: Date.now() + 365 * 86_400_000 },
        signed: false,
      });
      const cached = (get.body as { server_keys: JsonObject[] }).server_keys[0] as JsonObject;
      assert.ok(verifyJsonSignature(cached, c.serverName, keyId, key));
      assert.ok(verifyJsonSignature(cached, a.serverName, keyOf(a).keyId, keyOf(a).key));
    });

    it('fetches keys through trusted_key_servers, checking the notary signature with its configured key', async () => {
      const { keyId, key } = keyOf(c); // C is stopped: only the notary knows its key
      const viaNotary = await startFederatedServer(engine, {
        trusted_key_servers: [{ server_name: a.serverName, verify_keys: { [keyOf(a).keyId]: keyOf(a).key } }],
      });
      const wrongKey = await startFederatedServer(engine, {
        trusted_key_servers: [
          {
            server_name: a.serverName,
            verify_keys: { [keyOf(a).keyId]: publicKeyBase64FromSeed(generateSigningSeed()) },
          },
        ],
      });
      try {
        assert.equal(await viaNotary.hs.federation.keyRing.getVerifyKey(c.serverName, keyId), key);
        const row = await viaNotary.hs.storage.db
          .selectFrom('server_verify_keys')
          .select(['from_server', 'verify_key'])
          .where('server_name', '=', c.serverName)
          .where('key_id', '=', keyId)
          .executeTakeFirstOrThrow();
        assert.deepEqual(row, { from_server: a.serverName, verify_key: key });
        // A notary answer that does not verify with the configured key is not believed.
        assert.equal(await wrongKey.hs.federation.keyRing.getVerifyKey(c.serverName, keyId), null);
      } finally {
        await viaNotary.close();
        await wrongKey.close();
      }
    });

    it('keeps fetched keys across a restart, without asking the server again', async () => {
      const { keyId, key } = keyOf(b);
      assert.equal(await a.hs.federation.keyRing.getVerifyKey(b.serverName, keyId), key);
      await b.stop();
      await a.stop();
      a = await startFederatedServer(
        engine,
        {},
        { db: a.db, dataDir: a.dataDir, federationPort: a.federationPort },
      );
      assert.equal(await a.hs.federation.keyRing.getVerifyKey(b.serverName, keyId), key);
      assert.equal(await a.hs.federation.keyRing.getVerifyKey(b.serverName, 'ed25519:old1', 999), OLD_KEY);
    });
  });
}
