/**
 * Outbound transport on loopback: ip_range_blacklist is applied to resolved addresses (nothing is connected to),
 * TLS certificates are verified against the expected name and a custom CA, the well-known fetch follows redirects
 * and reads Cache-Control; and what each listener serves (federation vs client, version, server well-known).
 */
import assert from 'node:assert/strict';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_IP_RANGE_BLACKLIST } from '../../src/config/schema.js';
import { BlockedAddressError, FederationClient, FederationError } from '../../src/federation/client.js';
import { AddressPolicy } from '../../src/federation/ip-ranges.js';
import type { Dns } from '../../src/federation/resolver.js';
import { signingKeyFromSeed } from '../../src/keys/signing-key.js';
import { generateSelfSignedCertificate } from '../../src/keys/tls-certificate.js';
import { generateSigningSeed } from '../../src/rooms/signing.js';
import { HEARTH_VERSION } from '../../src/util/version.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import { readFileSync } from 'node:fs';

const LOOPBACK_ONLY = ['127.0.0.1/32'];

/** Every name resolves to 127.0.0.1 (so a name's check is the check of that address). */
const loopbackDns: Dns = {
  lookup: async () => [{ address: '127.0.0.1', family: 4 }],
  resolveSrv: async () => [],
};

function client(
  over: { verify?: boolean; ca?: string[]; whitelist?: string[]; dns?: Dns } = {},
): FederationClient {
  return new FederationClient({
    serverName: 'tester.example',
    signingKey: signingKeyFromSeed('ed25519:t', generateSigningSeed()),
    verifyCertificates: over.verify ?? false,
    ca: over.ca,
    addressPolicy: new AddressPolicy(DEFAULT_IP_RANGE_BLACKLIST, over.whitelist ?? []),
    dns: over.dns ?? loopbackDns,
    timeoutMs: 10_000,
  });
}

async function listen(server: TcpServer | HttpsServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  if (!a || typeof a !== 'object') throw new Error('no address');
  return a.port;
}

describe('outbound address policy and TLS', () => {
  let tcp: TcpServer;
  let tcpPort: number;
  let connections = 0;
  let https: HttpsServer;
  let httpsPort: number;
  const cert = generateSelfSignedCertificate({
    commonName: 'localhost',
    altNames: ['localhost', '127.0.0.1'],
  });
  const otherCa = generateSelfSignedCertificate({ commonName: 'other', altNames: ['other'] });
  const hits: string[] = [];

  before(async () => {
    tcp = createTcpServer((s) => {
      connections++;
      s.destroy();
    });
    tcpPort = await listen(tcp);
    https = createHttpsServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
      hits.push(`${req.headers.host} ${req.url}`);
      if (req.url === '/start') {
        res.writeHead(302, { location: '/.well-known/matrix/server' }).end();
      } else if (req.url === '/loop') {
        res.writeHead(301, { location: '/loop' }).end();
      } else if (req.url === '/.well-known/matrix/server') {
        // No content type: the body is JSON whatever the header says.
        res
          .writeHead(200, { 'cache-control': 'public, max-age=600' })
          .end('{"m.server":"deleg.example:443"}');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: req.url }));
      }
    });
    httpsPort = await listen(https);
  });
  after(() => {
    tcp.close();
    https.close();
  });

  it('refuses a blacklisted IP literal and a name resolving to one, without connecting', async () => {
    const c = client();
    try {
      await assert.rejects(c.get(`127.0.0.1:${tcpPort}`, '/_matrix/key/v2/server'), BlockedAddressError);
      await assert.rejects(
        c.get(`innocent.example:${tcpPort}`, '/_matrix/key/v2/server'),
        BlockedAddressError,
      );
      await assert.rejects(
        c.get(`[::ffff:127.0.0.1]:${tcpPort}`, '/_matrix/key/v2/server'),
        BlockedAddressError,
      );
      assert.equal(connections, 0, 'no connection was made');
    } finally {
      c.close();
    }
  });

  it('connects to a whitelisted address, found by name', async () => {
    const c = client({ whitelist: LOOPBACK_ONLY });
    try {
      const res = await c.get(`innocent.example:${httpsPort}`, '/_matrix/federation/v1/version', {
        signed: false,
      });
      assert.deepEqual(res.body, { ok: '/_matrix/federation/v1/version' });
      assert.equal(
        hits.at(-1),
        `innocent.example:${httpsPort} /_matrix/federation/v1/version`,
        'Host is the server name',
      );
    } finally {
      c.close();
    }
  });

  it('verifies certificates: a self-signed one fails, the custom CA passes, for the right name only', async () => {
    const path = '/_matrix/federation/v1/version';
    const system = client({ verify: true, whitelist: LOOPBACK_ONLY });
    const custom = client({ verify: true, ca: [cert.certPem], whitelist: LOOPBACK_ONLY });
    const wrongCa = client({ verify: true, ca: [otherCa.certPem], whitelist: LOOPBACK_ONLY });
    try {
      await assert.rejects(system.get(`localhost:${httpsPort}`, path, { signed: false }), FederationError);
      await assert.rejects(wrongCa.get(`localhost:${httpsPort}`, path, { signed: false }), FederationError);
      assert.equal((await custom.get(`localhost:${httpsPort}`, path, { signed: false })).status, 200);
      assert.equal((await custom.get(`127.0.0.1:${httpsPort}`, path, { signed: false })).status, 200);
      await assert.rejects(
        custom.get(`wrong-name.example:${httpsPort}`, path, { signed: false }),
        (err: unknown) => err instanceof FederationError && /wrong-name\.example/.test(err.message),
      );
    } finally {
      system.close();
      custom.close();
      wrongCa.close();
    }
  });

  it('fetches well-known documents following redirects, with their max-age, and stops redirect loops', async () => {
    const c = client({ verify: true, ca: [cert.certPem], whitelist: LOOPBACK_ONLY });
    try {
      assert.deepEqual(await c.fetchWellKnownUrl(`https://localhost:${httpsPort}/start`), {
        server: 'deleg.example:443',
        maxAgeMs: 600_000,
      });
      await assert.rejects(c.fetchWellKnownUrl(`https://localhost:${httpsPort}/loop`), /too many/);
      await assert.rejects(c.fetchWellKnownUrl(`https://localhost:${httpsPort}/other`), /no m\.server/);
      const blocked = client({ verify: false });
      await assert.rejects(
        blocked.fetchWellKnownUrl(`https://localhost:${httpsPort}/start`),
        BlockedAddressError,
      );
      blocked.close();
    } finally {
      c.close();
    }
  });
});

for (const engine of ENGINES) {
  describe(`${engine}: federation listeners`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    before(async () => {
      a = await startFederatedServer(engine, { serve_server_wellknown: true });
      b = await startFederatedServer(engine, { ip_range_whitelist: [] });
    });
    after(async () => {
      await Promise.all([a, b].map((s) => s?.close()));
    });

    it('serves the federation API on the TLS listener and the client API on the other, not each other', async () => {
      const c = client({ verify: true, ca: [readFileSync(a.certPath, 'utf8')], whitelist: LOOPBACK_ONLY });
      try {
        const version = await c.get(a.serverName, '/_matrix/federation/v1/version', { signed: false });
        assert.deepEqual(version.body, { server: { name: 'Hearth', version: HEARTH_VERSION } });
        await assert.rejects(
          c.get(a.serverName, '/_matrix/client/versions', { signed: false }),
          (err: unknown) =>
            err instanceof FederationError && err.status === 404 && err.errcode === 'M_UNRECOGNIZED',
        );
      } finally {
        c.close();
      }
      const keysOnClient = await a.client().get('/_matrix/key/v2/server');
      assert.equal(keysOnClient.status, 404);
      assert.equal(keysOnClient.body.errcode, 'M_UNRECOGNIZED');
      assert.equal((await a.client().get('/_matrix/client/versions')).status, 200);
    });

    it('serves /.well-known/matrix/server on the client listener only when serve_server_wellknown is on', async () => {
      const on = await a.client().get('/.well-known/matrix/server');
      assert.equal(on.status, 200);
      assert.deepEqual(on.body, { 'm.server': a.serverName });
      const off = await b.client().get('/.well-known/matrix/server');
      assert.equal(off.status, 404);
    });

    it('a server without loopback whitelisted refuses to contact the other (default blacklist)', async () => {
      await assert.rejects(
        b.hs.federation.client.get(a.serverName, '/_matrix/key/v2/server', { signed: false }),
        BlockedAddressError,
      );
      assert.equal(await b.hs.federation.keyRing.getVerifyKey(a.serverName, a.hs.signingKey.keyId), null);
    });
  });
}
