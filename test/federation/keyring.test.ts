/**
 * The key ring with a scripted transport and clock, on every engine: cache first, notaries before the server, one
 * fetch per server at a time and at most one per retry window, refetch once a key's validity has passed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FederationResponse } from '../../src/federation/client.js';
import { KEY_FETCH_RETRY_MS, KeyRing, type KeyTransport } from '../../src/federation/keyring.js';
import { ownKeyDocument } from '../../src/federation/server-keys.js';
import { signingKeyFromSeed } from '../../src/keys/signing-key.js';
import type { JsonObject } from '../../src/rooms/event.js';
import { generateSigningSeed, publicKeyBase64FromSeed, signJson } from '../../src/rooms/signing.js';
import { openStorage, type Storage } from '../../src/storage/db.js';
import { ENGINES, freshDatabase, type TestDatabase } from '../helpers/engines.js';

const HOUR = 3_600_000;

function remote(name: string) {
  const seed = generateSigningSeed();
  const key = publicKeyBase64FromSeed(seed);
  return {
    name,
    key,
    doc: (validUntil: number): JsonObject =>
      ownKeyDocument(
        { serverName: name, keyId: 'ed25519:r', seed, publicKeyBase64: key, oldKeys: {} },
        validUntil,
      ),
  };
}

for (const engine of ENGINES) {
  describe(`${engine}: key ring`, () => {
    let t: TestDatabase;
    let storage: Storage;
    const clock = { now: 1_700_000_000_000 };
    const calls: string[] = [];
    const up = new Set<string>();
    const servers = new Map<string, ReturnType<typeof remote>>();
    const notarySeed = generateSigningSeed();
    const transport: KeyTransport = {
      async get(dest, path): Promise<FederationResponse> {
        calls.push(`GET ${dest}${path}`);
        await new Promise((r) => setTimeout(r, 5));
        const s = servers.get(dest);
        if (!s || !up.has(dest)) throw new Error(`${dest} is down`);
        return { status: 200, headers: {}, body: s.doc(clock.now + HOUR) };
      },
      async post(dest, path, body): Promise<FederationResponse> {
        calls.push(`POST ${dest}${path}`);
        if (!up.has(dest)) throw new Error(`${dest} is down`);
        const wanted = Object.keys((body as { server_keys: JsonObject }).server_keys);
        const list = wanted
          .map((n) => servers.get(n))
          .filter((s) => s !== undefined)
          .map((s) => signJson(s.doc(clock.now + HOUR), dest, 'ed25519:n', notarySeed));
        return { status: 200, headers: {}, body: { server_keys: list } };
      },
    };
    const ring = (trusted: string[] = []): KeyRing =>
      new KeyRing({
        serverName: 'self.example',
        signingKey: signingKeyFromSeed('ed25519:self', generateSigningSeed()),
        oldSigningKeys: {},
        keyRefreshIntervalMs: 86_400_000,
        db: storage.db,
        transport,
        trustedKeyServers: trusted.map((server_name) => ({
          server_name,
          verify_keys: { 'ed25519:n': publicKeyBase64FromSeed(notarySeed) },
        })),
        now: () => clock.now,
      });

    before(async () => {
      t = await freshDatabase(engine);
      storage = await openStorage(t.config);
    });
    after(async () => {
      await storage.close();
      await t.drop();
    });

    it('fetches once for concurrent lookups, then answers from the database', async () => {
      const r = remote('one.example');
      servers.set(r.name, r);
      up.add(r.name);
      const keyRing = ring();
      calls.length = 0;
      const got = await Promise.all([1, 2, 3].map(() => keyRing.getVerifyKey(r.name, 'ed25519:r')));
      assert.deepEqual(got, [r.key, r.key, r.key]);
      assert.equal(
        await ring().getVerifyKey(r.name, 'ed25519:r'),
        r.key,
        'a new key ring reads the stored key',
      );
      assert.deepEqual(calls, ['GET one.example/_matrix/key/v2/server']);
    });

    it('asks again only after the retry window for a key the server does not have, and once the key expired', async () => {
      const keyRing = ring();
      calls.length = 0;
      assert.equal(await keyRing.getVerifyKey('one.example', 'ed25519:unknown'), null);
      assert.equal(await keyRing.getVerifyKey('one.example', 'ed25519:unknown'), null);
      assert.equal(calls.length, 1);
      clock.now += KEY_FETCH_RETRY_MS;
      assert.equal(await keyRing.getVerifyKey('one.example', 'ed25519:unknown'), null);
      assert.equal(calls.length, 2);
      clock.now += 2 * HOUR; // past the key's valid_until_ts
      assert.equal(await keyRing.getVerifyKey('one.example', 'ed25519:r'), servers.get('one.example')?.key);
      assert.equal(calls.length, 3, 'refetched once the stored key was no longer valid');
      // A signature from before the expiry still finds the key without a fetch.
      up.delete('one.example');
      assert.ok(await keyRing.getVerifyKey('one.example', 'ed25519:r', clock.now - HOUR));
      assert.equal(calls.length, 3);
    });

    it('asks trusted key servers before the server, and the server when the notary fails', async () => {
      const r = remote('two.example');
      servers.set(r.name, r);
      up.add(r.name);
      up.add('notary.example');
      calls.length = 0;
      assert.equal(await ring(['notary.example']).getVerifyKey(r.name, 'ed25519:r'), r.key);
      assert.deepEqual(calls, ['POST notary.example/_matrix/key/v2/query']);
      const r3 = remote('three.example');
      servers.set(r3.name, r3);
      up.add(r3.name);
      up.delete('notary.example');
      calls.length = 0;
      assert.equal(await ring(['notary.example']).getVerifyKey(r3.name, 'ed25519:r'), r3.key);
      assert.deepEqual(calls, [
        'POST notary.example/_matrix/key/v2/query',
        'GET three.example/_matrix/key/v2/server',
      ]);
    });

    it('as a notary, refetches a half-expired document at most once per retry window, and serves the cache when the server is down', async () => {
      const keyRing = ring();
      const r = remote('four.example');
      servers.set(r.name, r);
      up.add(r.name);
      calls.length = 0;
      for (let i = 0; i < 5; i++)
        assert.equal((await keyRing.notaryKeys(r.name, clock.now + 100 * HOUR)).length, 1);
      assert.equal(calls.length, 1, 'repeated demanding queries do not hammer the server');
      clock.now += KEY_FETCH_RETRY_MS + HOUR / 2; // past half of the cached document's life
      up.delete(r.name);
      const [cached] = await keyRing.notaryKeys(r.name, clock.now);
      assert.equal(calls.length, 2);
      assert.equal((cached?.['verify_keys'] as JsonObject)['ed25519:r'] !== undefined, true);
      assert.ok((cached?.['signatures'] as JsonObject)['self.example'], 'signed by the notary');
      assert.deepEqual(await keyRing.notaryKeys('never.example', clock.now), []);
    });
  });
}
