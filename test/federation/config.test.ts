/**
 * Federation settings in homeserver.yaml, generate-config --federation-port, and the self-signed certificate; the
 * generated configuration starts a server whose TLS listener verifies with the generated certificate (SQLite).
 */
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { buildProgram } from '../../src/cli/main.js';
import { generateConfig, tlsPaths } from '../../src/config/generate.js';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { DEFAULT_IP_RANGE_BLACKLIST, listenerResources } from '../../src/config/schema.js';
import { FederationClient } from '../../src/federation/client.js';
import { AddressPolicy } from '../../src/federation/ip-ranges.js';
import { startHomeserver } from '../../src/homeserver.js';
import { signingKeyFromSeed } from '../../src/keys/signing-key.js';
import { createLogger } from '../../src/log.js';
import { generateSigningSeed, verifyJsonSignature } from '../../src/rooms/signing.js';
import { freePort } from '../helpers/federation.js';
import {
  certificateNamesFor,
  ensureSelfSignedCertificate,
  generateSelfSignedCertificate,
} from '../../src/keys/tls-certificate.js';

function base(): Record<string, unknown> {
  return {
    server_name: 'example.org',
    listeners: [{ port: 8008 }],
    database: { engine: 'sqlite', path: 'homeserver.db' },
    signing_key_path: 'signing.key',
    media_store_path: 'media',
  };
}

function rejects(raw: unknown): string {
  try {
    validateConfig(raw, '/etc/hearth');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('accepted');
}

describe('federation config', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('defaults as Synapse: verify certificates, private ranges blacklisted, no notary, no server well-known', () => {
    const c = validateConfig(base(), '/etc/hearth');
    assert.equal(c.federation_verify_certificates, true);
    assert.deepEqual(c.ip_range_blacklist, DEFAULT_IP_RANGE_BLACKLIST);
    assert.ok(c.ip_range_blacklist.includes('127.0.0.0/8') && c.ip_range_blacklist.includes('fc00::/7'));
    assert.deepEqual(c.ip_range_whitelist, []);
    assert.deepEqual(c.trusted_key_servers, []);
    assert.equal(c.serve_server_wellknown, false);
    assert.equal(c.key_refresh_interval, 86_400_000);
    assert.equal(c.federation_domain_whitelist, undefined);
  });

  it('a listener without resources serves the client API; resources name what else it serves', () => {
    const c = validateConfig(
      {
        ...base(),
        listeners: [
          { port: 8008 },
          { port: 8448, tls: true, resources: [{ names: ['federation'], compress: false }] },
          { port: 8009, resources: [{ names: ['client', 'federation'] }] },
          { port: 9000, type: 'metrics' },
        ],
        tls_certificate_path: 'tls/cert.pem',
        tls_private_key_path: 'tls/key.pem',
      },
      '/etc/hearth',
    );
    assert.deepEqual([...listenerResources(c.listeners[0]!)], ['client']);
    assert.deepEqual([...listenerResources(c.listeners[1]!)], ['federation']);
    assert.deepEqual([...listenerResources(c.listeners[2]!)].sort(), ['client', 'federation']);
    assert.ok(!listenerResources(c.listeners[3]!).has('client'));
    // Relative paths are resolved against the config's directory.
    assert.equal(c.tls_certificate_path, '/etc/hearth/tls/cert.pem');
    assert.equal(c.tls_private_key_path, '/etc/hearth/tls/key.pem');
  });

  it('rejects tls without certificate paths, unknown resources, bad ranges and bad durations', () => {
    assert.match(
      rejects({ ...base(), listeners: [{ port: 8448, tls: true }] }),
      /tls_certificate_path: required/,
    );
    assert.match(
      rejects({ ...base(), listeners: [{ port: 8448, resources: [{ names: ['replication'] }] }] }),
      /listeners\[0\]\.resources\[0\]\.names\[0\]/,
    );
    assert.match(rejects({ ...base(), ip_range_whitelist: ['10.0.0.0/33'] }), /ip_range_whitelist\[0\]/);
    assert.match(rejects({ ...base(), ip_range_blacklist: ['localhost'] }), /ip_range_blacklist\[0\]/);
    assert.match(rejects({ ...base(), key_refresh_interval: '1 day' }), /key_refresh_interval/);
  });

  it('parses Synapse durations', () => {
    const ms = (v: unknown): number =>
      validateConfig({ ...base(), key_refresh_interval: v }, '/').key_refresh_interval;
    assert.equal(ms('1d'), 86_400_000);
    assert.equal(ms('12h'), 43_200_000);
    assert.equal(ms('30m'), 1_800_000);
    assert.equal(ms(5000), 5000);
    assert.equal(ms('5000'), 5000);
  });

  it('needs verify_keys of a trusted key server when certificates are not verified (as Synapse)', () => {
    const notary = { server_name: 'notary.example' };
    assert.match(
      rejects({ ...base(), federation_verify_certificates: false, trusted_key_servers: [notary] }),
      /trusted_key_servers\[0\]\.verify_keys: required/,
    );
    const ok = validateConfig(
      {
        ...base(),
        federation_verify_certificates: false,
        trusted_key_servers: [{ ...notary, accept_keys_insecurely: true }],
      },
      '/',
    );
    assert.equal(ok.trusted_key_servers[0]?.server_name, 'notary.example');
  });

  it('generate-config --federation-port adds a TLS federation listener, matrix.org as notary and valid config', () => {
    const text = generateConfig({ serverName: 'example.org', dataDir: '/srv/hearth', federationPort: 8448 });
    const c = validateConfig(parseYaml(text), '/');
    assert.equal(c.listeners.length, 2);
    const fed = c.listeners[1]!;
    assert.equal(fed.port, 8448);
    assert.equal(fed.tls, true);
    assert.deepEqual([...listenerResources(fed)], ['federation']);
    assert.deepEqual([...listenerResources(c.listeners[0]!)], ['client']);
    assert.equal(c.tls_certificate_path, '/srv/hearth/example.org.tls.crt');
    assert.equal(c.tls_private_key_path, '/srv/hearth/example.org.tls.key');
    assert.deepEqual(c.trusted_key_servers, [{ server_name: 'matrix.org' }]);
    assert.match(text, /matrix\.org is long-lived, stable and trusted/);
    assert.equal(c.federation_verify_certificates, true);
    // Without the option there is no federation listener and no certificate path.
    const plain = validateConfig(
      parseYaml(generateConfig({ serverName: 'example.org', dataDir: '/d' })),
      '/',
    );
    assert.equal(plain.listeners.length, 1);
    assert.equal(plain.tls_certificate_path, undefined);
  });

  it('writes a self-signed certificate for the server name once, key mode 0600', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hearth-tls-'));
    dirs.push(dir);
    const { cert, key } = tlsPaths({ serverName: 'localhost:8448', dataDir: dir, federationPort: 8448 });
    assert.equal(ensureSelfSignedCertificate(cert, key, 'localhost:8448'), true);
    assert.equal(statSync(key).mode & 0o777, 0o600);
    const pem = readFileSync(cert, 'utf8');
    assert.equal(ensureSelfSignedCertificate(cert, key, 'localhost:8448'), false, 'kept on the second run');
    assert.equal(readFileSync(cert, 'utf8'), pem);
    const x = new X509Certificate(pem);
    assert.equal(x.checkHost('localhost'), 'localhost');
    assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
    assert.ok(x.checkPrivateKey(createPrivateKey(readFileSync(key))));
  });

  it('generates certificates that parse as X.509 with the requested names, self-signed and CA', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const { certPem, keyPem } = generateSelfSignedCertificate({
      commonName: 'hs.example',
      altNames: ['hs.example', '192.0.2.7', '2001:db8::1'],
      days: 30,
      now,
    });
    const x = new X509Certificate(certPem);
    assert.equal(x.subject, 'CN=hs.example');
    assert.equal(x.issuer, 'CN=hs.example');
    assert.equal(x.subjectAltName, 'DNS:hs.example, IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:1');
    assert.ok(x.ca);
    assert.ok(x.verify(x.publicKey), 'self-signed');
    assert.ok(x.checkPrivateKey(createPrivateKey(keyPem)));
    assert.equal(new Date(x.validTo).getTime(), now.getTime() + 30 * 86_400_000);
    assert.equal(x.checkHost('other.example'), undefined);
    // GeneralizedTime after 2049.
    const late = new X509Certificate(
      generateSelfSignedCertificate({
        commonName: 'a',
        altNames: ['a'],
        now: new Date('2060-05-05T00:00:00Z'),
      }).certPem,
    );
    assert.equal(new Date(late.validFrom).getUTCFullYear(), 2060);
    assert.deepEqual(certificateNamesFor('[::1]:8448').altNames, ['::1', 'localhost', '127.0.0.1']);
    assert.deepEqual(certificateNamesFor('matrix.example.org').altNames, ['matrix.example.org']);
  });
});

describe('generate-config --federation-port, end to end', () => {
  it('starts a server whose TLS federation listener serves keys another server can verify with the generated certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hearth-gen-'));
    const port = await freePort();
    const serverName = `localhost:${port}`;
    let out = '';
    const write = process.stdout.write.bind(process.stdout);
    const errWrite = process.stderr.write.bind(process.stderr);
    // The CLI writes the config as a string; the test runner's own (binary) output, which may come while the
    // lazily imported command loads, passes through.
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (typeof chunk === 'string') out += chunk;
      else return (write as (c: Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
      return true;
    }) as typeof process.stdout.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      await buildProgram().parseAsync(
        [
          'generate-config',
          '--server-name',
          serverName,
          '--data-dir',
          dir,
          '--port',
          '0',
          '--federation-port',
          String(port),
        ],
        { from: 'user' },
      );
    } finally {
      process.stdout.write = write;
      process.stderr.write = errWrite;
    }
    const raw = parseYaml(out) as Record<string, unknown>;
    const config = validateConfig({ ...raw, log_level: 'silent', suppress_key_server_warning: true }, dir);
    const hs = await startHomeserver(config, { logger: createLogger('silent') });
    const client = new FederationClient({
      serverName: 'checker.example',
      signingKey: signingKeyFromSeed('ed25519:c', generateSigningSeed()),
      verifyCertificates: true,
      ca: [readFileSync(config.tls_certificate_path as string, 'utf8')],
      addressPolicy: new AddressPolicy(DEFAULT_IP_RANGE_BLACKLIST, ['127.0.0.1', '::1']),
    });
    try {
      assert.ok(
        hs.urls.some((u) => u === `https://127.0.0.1:${port}`),
        hs.urls.join(' '),
      );
      const res = await client.get(serverName, '/_matrix/key/v2/server', { signed: false });
      const doc = res.body as Record<string, unknown>;
      assert.equal(doc['server_name'], serverName);
      assert.ok(verifyJsonSignature(doc, serverName, hs.signingKey.keyId, hs.signingKey.publicKeyBase64));
    } finally {
      client.close();
      await hs.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
