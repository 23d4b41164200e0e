/**
 * Federating Hearths on loopback for the federation tests: each has a client listener and a TLS federation listener
 * with a fresh self-signed certificate, the server name `127.0.0.1:<federation port>` (an IP literal with a port, so
 * discovery goes straight to the listener), certificate checks off and loopback whitelisted.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { ConfigInput } from '../../src/config/schema.js';
import { StartupError } from '../../src/homeserver.js';
import { generateSelfSignedCertificate } from '../../src/keys/tls-certificate.js';
import type { Engine } from '../../src/storage/dialect.js';
import { freshDatabase, type TestDatabase } from './engines.js';
import { startTestServer, type TestServer } from './server.js';

export interface FederatedServer extends TestServer {
  /** https://127.0.0.1:<port> of the federation listener. */
  federationUrl: string;
  federationPort: number;
  /** The PEM certificate of the federation listener (to trust it as a CA elsewhere). */
  certPath: string;
}

/** A port free right now on 127.0.0.1 (the server name must name it before the server starts). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (!addr || typeof addr !== 'object') throw new Error('no port');
  return addr.port;
}

export async function startFederatedServer(
  engine: Engine,
  overrides: Partial<ConfigInput> = {},
  reuse?: { db: TestDatabase; dataDir: string; federationPort: number },
): Promise<FederatedServer> {
  const db = reuse?.db ?? (await freshDatabase(engine));
  const dataDir = reuse?.dataDir ?? mkdtempSync(join(tmpdir(), 'hearth-data-'));
  const tls = overrides.tls_certificate_path ? {} : writeCertificate(dataDir);
  for (let attempt = 0; ; attempt++) {
    const port = reuse?.federationPort ?? (await freePort());
    try {
      const server = await startTestServer(
        engine,
        {
          server_name: `127.0.0.1:${port}`,
          listeners: [
            { port: 0, bind_addresses: ['127.0.0.1'] },
            { port, bind_addresses: ['127.0.0.1'], tls: true, resources: [{ names: ['federation'] }] },
          ],
          federation_verify_certificates: false,
          ip_range_whitelist: ['127.0.0.1/32'],
          ...tls,
          ...overrides,
        },
        { db, dataDir },
      );
      return Object.assign(server, {
        federationUrl: server.hs.urls[1] as string,
        federationPort: port,
        certPath: server.hs.config.tls_certificate_path as string,
      });
    } catch (err) {
      // Another process took the port between freePort() and listen: try another one.
      if (reuse || attempt >= 3 || !(err instanceof StartupError) || !/in use/.test(err.message)) throw err;
    }
  }
}

/** A certificate for 127.0.0.1 and localhost in the data dir (kept across restarts). */
function writeCertificate(dataDir: string): Partial<ConfigInput> {
  const cert = join(dataDir, 'tls.crt');
  const key = join(dataDir, 'tls.key');
  if (!existsSync(cert)) {
    const { certPem, keyPem } = generateSelfSignedCertificate({
      commonName: 'localhost',
      altNames: ['localhost', '127.0.0.1'],
    });
    writeFileSync(cert, certPem);
    writeFileSync(key, keyPem, { mode: 0o600 });
  }
  return { tls_certificate_path: cert, tls_private_key_path: key };
}
