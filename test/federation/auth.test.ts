/**
 * X-Matrix request authentication between two Hearths over TLS: A's signed requests are accepted by B, and every
 * unsigned, forged, tampered, misdirected or unverifiable request is a 401 M_UNAUTHORIZED with a Matrix body.
 * federation_domain_whitelist refuses both ways. Every engine.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { FederationDeniedError, FederationError } from '../../src/federation/client.js';
import { signRequest } from '../../src/federation/x-matrix.js';
import { generateSigningSeed } from '../../src/rooms/signing.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import type { Json } from '../helpers/server.js';

/** A request to a federation listener with exactly the given headers (the certificate is self-signed). */
function raw(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Json }> {
  return new Promise((resolve, reject) => {
    const req = request(base + path, { method, headers, rejectUnauthorized: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

function assertUnauthorized(res: { status: number; body: Json }, what: RegExp): void {
  assert.equal(res.status, 401, JSON.stringify(res.body));
  assert.equal(res.body.errcode, 'M_UNAUTHORIZED');
  assert.match(String(res.body.error), what);
}

for (const engine of ENGINES) {
  describe(`${engine}: federation request authentication`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let bob: string;
    let path: string;
    before(async () => {
      a = await startFederatedServer(engine);
      b = await startFederatedServer(engine);
      const user = await b.user('bob');
      bob = user.userId;
      const set = await user.put(`/_matrix/client/v3/profile/${encodeURIComponent(bob)}/displayname`, {
        displayname: 'Bob on B',
      });
      assert.equal(set.status, 200);
      path = `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(bob)}`;
    });
    after(async () => {
      await Promise.all([a, b].map((s) => s?.close()));
    });

    /** An X-Matrix header of A's, for any method, URI, destination and key. */
    function header(
      over: { uri?: string; destination?: string; seed?: Uint8Array; keyId?: string } = {},
    ): string {
      return signRequest(
        {
          method: 'GET',
          uri: over.uri ?? path,
          origin: a.serverName,
          destination: over.destination ?? b.serverName,
        },
        over.keyId ?? a.hs.signingKey.keyId,
        over.seed ?? a.hs.signingKey.seed,
      );
    }

    it("accepts A's signed request (B fetches A's key to check it)", async () => {
      const res = await a.hs.federation.client.get(b.serverName, '/_matrix/federation/v1/query/profile', {
        query: { user_id: bob },
      });
      assert.deepEqual(res.body, { displayname: 'Bob on B' });
      const field = await a.hs.federation.client.get(b.serverName, '/_matrix/federation/v1/query/profile', {
        query: { user_id: bob, field: 'avatar_url' },
      });
      assert.deepEqual(field.body, {});
      const stored = await b.hs.federation.keyRing.getVerifyKey(a.serverName, a.hs.signingKey.keyId);
      assert.equal(stored, a.hs.signingKey.publicKeyBase64);
    });

    it('accepts a header without destination (servers before v1.3) and with reordered, spaced parameters', async () => {
      const h = header();
      const noDestination = h.replace(/destination="[^"]*",/, '');
      assert.equal((await raw(b.federationUrl, 'GET', path, { authorization: noDestination })).status, 200);
      const params = h.replace(/^X-Matrix /, '').split(',');
      const reordered = `X-Matrix  ${params.reverse().join(' , ')}`;
      assert.equal((await raw(b.federationUrl, 'GET', path, { authorization: reordered })).status, 200);
    });

    it('rejects a request without Authorization, or with another scheme', async () => {
      assertUnauthorized(await raw(b.federationUrl, 'GET', path), /Missing Authorization/);
      assertUnauthorized(
        await raw(b.federationUrl, 'GET', path, { authorization: 'Bearer abc' }),
        /Malformed X-Matrix/,
      );
      // Through A's client, the answer surfaces as a FederationError with the status and errcode.
      await assert.rejects(
        a.hs.federation.client.get(b.serverName, '/_matrix/federation/v1/query/profile', {
          query: { user_id: bob },
          signed: false,
        }),
        (err: unknown) =>
          err instanceof FederationError && err.status === 401 && err.errcode === 'M_UNAUTHORIZED',
      );
    });

    it('rejects a signature made with another key under A’s key id', async () => {
      const forged = header({ seed: generateSigningSeed() });
      assertUnauthorized(
        await raw(b.federationUrl, 'GET', path, { authorization: forged }),
        /Invalid signature/,
      );
    });

    it('rejects a signature over another request (tampered URI or method)', async () => {
      const other = header({
        uri: `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent('@x:y')}`,
      });
      assertUnauthorized(
        await raw(b.federationUrl, 'GET', path, { authorization: other }),
        /Invalid signature/,
      );
      const post = signRequest(
        { method: 'POST', uri: path, origin: a.serverName, destination: b.serverName },
        a.hs.signingKey.keyId,
        a.hs.signingKey.seed,
      );
      assertUnauthorized(
        await raw(b.federationUrl, 'GET', path, { authorization: post }),
        /Invalid signature/,
      );
    });

    it('rejects a request addressed to another server', async () => {
      const misdirected = header({ destination: 'elsewhere.example' });
      assertUnauthorized(
        await raw(b.federationUrl, 'GET', path, { authorization: misdirected }),
        /sent to elsewhere\.example/,
      );
    });

    it('rejects a key id the origin does not have, and an origin that cannot be reached', async () => {
      const unknownKey = header({ keyId: 'ed25519:nope' });
      assertUnauthorized(
        await raw(b.federationUrl, 'GET', path, { authorization: unknownKey }),
        /Cannot find key/,
      );
      const ghost = signRequest(
        { method: 'GET', uri: path, origin: '127.0.0.1:1', destination: b.serverName },
        'ed25519:k',
        generateSigningSeed(),
      );
      assertUnauthorized(
        await raw(b.federationUrl, 'GET', path, { authorization: ghost }),
        /Cannot find key/,
      );
    });

    it('refuses servers outside federation_domain_whitelist, inbound (403) and outbound (no request)', async () => {
      const closed = await startFederatedServer(engine, { federation_domain_whitelist: ['friend.example'] });
      try {
        const res = await raw(
          closed.federationUrl,
          'GET',
          '/_matrix/federation/v1/query/profile?user_id=%40x%3Ay',
          {
            authorization: signRequest(
              {
                method: 'GET',
                uri: '/_matrix/federation/v1/query/profile?user_id=%40x%3Ay',
                origin: a.serverName,
                destination: closed.serverName,
              },
              a.hs.signingKey.keyId,
              a.hs.signingKey.seed,
            ),
          },
        );
        assert.equal(res.status, 403);
        assert.equal(res.body.errcode, 'M_FORBIDDEN');
        await assert.rejects(
          closed.hs.federation.client.get(a.serverName, '/_matrix/key/v2/server', { signed: false }),
          FederationDeniedError,
        );
      } finally {
        await closed.close();
      }
    });
  });
}
