/**
 * HTTPS for a listener with `tls: true`. A TLS server accepts the connections and hands each decrypted socket to the
 * Fastify app's own HTTP server, so the app (created by createHttpApp like every other listener) and its shutdown
 * handling are the same for both kinds of listener.
 */
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:tls';

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/** Serves `app` over TLS on host:port; resolves with the TLS server once it listens. */
export async function listenTls(
  app: FastifyInstance,
  files: TlsFiles,
  port: number,
  host: string,
): Promise<Server> {
  await app.ready();
  const server = createServer({ cert: files.cert, key: files.key, ALPNProtocols: ['http/1.1'] }, (socket) =>
    app.server.emit('connection', socket),
  );
  // A failed handshake (a plain-HTTP client, an unknown CA on the other side) only closes that socket.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export function tlsAddress(server: Server): AddressInfo | null {
  const a = server.address();
  return a && typeof a === 'object' ? a : null;
}
