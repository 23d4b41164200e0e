/**
 * HTTPS for a listener with `tls: true`: Fastify is given a server factory that makes a node:https server with the
 * certificate and key, configured with the timeouts Fastify gives its own servers. Everything else (listen, close,
 * connection tracking, client errors) is Fastify's usual handling.
 */
import type { FastifyServerFactory } from 'fastify';
import type { Server as HttpServer } from 'node:http';
import { createServer } from 'node:https';

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

export function httpsServerFactory(files: TlsFiles): FastifyServerFactory {
  return (handler, opts) => {
    const server = createServer({ cert: files.cert, key: files.key, ALPNProtocols: ['http/1.1'] }, handler);
    const o = opts as { keepAliveTimeout?: number; requestTimeout?: number; connectionTimeout?: number };
    if (o.keepAliveTimeout !== undefined) server.keepAliveTimeout = o.keepAliveTimeout;
    if (o.requestTimeout !== undefined) server.requestTimeout = o.requestTimeout;
    if (o.connectionTimeout !== undefined) server.setTimeout(o.connectionTimeout);
    // An https.Server is an http.Server over TLS sockets; Fastify's types only know the plain one.
    return server as unknown as HttpServer;
  };
}
