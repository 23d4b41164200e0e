/** The Fastify application: Matrix error model, JSON parsing, CORS, 404/405, request ids and logging. */
import { randomBytes } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';
import { databaseUnavailable } from '../integrity/db-errors.js';
import type { Requester } from './auth.js';
import { MatrixError } from './errors.js';
import { parseJsonBody } from './json-body.js';
import { httpsServerFactory, type TlsFiles } from './tls.js';

export interface HttpOptions {
  logger: Logger;
  maxJsonBodySize: number;
  trustProxy: boolean;
  /** Serve HTTPS with this certificate and key (a listener with `tls: true`). */
  https?: TlsFiles;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The handler receives the raw body as a Buffer instead of parsed JSON (media uploads). */
    rawBody?: boolean;
  }
}

/** Longest path parameter, in characters after decoding (Matrix ids are at most 255 bytes). */
const MAX_PARAM_LENGTH = 1000;

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, HEAD, POST, PUT, DELETE, OPTIONS',
  'access-control-allow-headers': 'X-Requested-With, Content-Type, Authorization, Date',
  'access-control-expose-headers': 'Synapse-Trace-Id, Server, ETag',
};

/** Strips query-string secrets before a URL reaches the logs. */
export function safeUrl(url: string): string {
  return url.replace(/([?&](?:access_token|refresh_token|password)=)[^&]*/gi, '$1<redacted>');
}

function routeRegex(url: string): RegExp {
  const pattern = url
    .split('/')
    .map((seg) =>
      seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${pattern}/?$`);
}

/**
 * The r0 prefixes of the client and media APIs (before Matrix v1.1) are served by the same handlers as v3:
 * matrix-nio, SyTest and older bots still use them.
 */
const LEGACY_PREFIXES: readonly (readonly [string, string])[] = [
  ['/_matrix/client/r0/', '/_matrix/client/v3/'],
  ['/_matrix/media/r0/', '/_matrix/media/v3/'],
];

export function rewriteLegacyUrl(url: string): string {
  for (const [from, to] of LEGACY_PREFIXES) {
    if (url.startsWith(from)) return to + url.slice(from.length);
  }
  return url;
}

/** A JSON answer written straight to a socket the HTTP parser gave up on (oversized headers, malformed request). */
function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let status = 400;
  let body: MatrixError = new MatrixError('M_UNKNOWN', 'Malformed HTTP request');
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431;
    body = new MatrixError('M_TOO_LARGE', 'Request line or headers too large');
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    body = new MatrixError('M_UNKNOWN', 'Request timed out');
  }
  const json = JSON.stringify(body.toJSON());
  if (socket.writable) {
    const headers = Object.entries(CORS_HEADERS)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(json)}\r\n${headers}Connection: close\r\n\r\n${json}`,
    );
  }
  socket.destroy(err);
}

function fastifyErrorToMatrix(err: FastifyError): MatrixError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new MatrixError('M_TOO_LARGE', 'Request body too large');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new MatrixError('M_NOT_JSON', 'Content not JSON');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new MatrixError('M_UNKNOWN', err.message, {}, err.statusCode ?? 400);
    case 'FST_ERR_BAD_URL':
      return new MatrixError('M_INVALID_PARAM', 'Invalid percent-encoding in the request path', {}, 400);
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new MatrixError(
        'M_TOO_LARGE',
        `A path parameter is longer than ${MAX_PARAM_LENGTH} characters`,
        {},
        414,
      );
    case 'FST_ERR_ASYNC_CONSTRAINT':
      return new MatrixError('M_UNRECOGNIZED', 'Unrecognized request', {}, 400);
    default:
      if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
        return new MatrixError('M_UNKNOWN', err.message, {}, err.statusCode);
      }
      return undefined;
  }
}

/**
 * Request ids (in log lines and 500 errors): a random prefix per process, so ids of different runs do not collide,
 * then a counter (cheaper per request than random bytes).
 */
const requestIdPrefix = randomBytes(3).toString('hex');
let requestCounter = 0;
function nextRequestId(): string {
  return `${requestIdPrefix}${(++requestCounter).toString(36).padStart(6, '0')}`;
}

const inFlight = new WeakMap<FastifyInstance, { ids: Set<string>; idle: Set<() => void> }>();

/** Resolves once no request is in flight on `app` (used at shutdown to close idle and half-open sockets early). */
export function whenIdle(app: FastifyInstance): Promise<void> {
  const state = inFlight.get(app);
  if (!state || state.ids.size === 0) return Promise.resolve();
  return new Promise((resolve) => state.idle.add(resolve));
}

export function createHttpApp(opts: HttpOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    bodyLimit: opts.maxJsonBodySize,
    trustProxy: opts.trustProxy,
    genReqId: nextRequestId,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PARAM_LENGTH },
    rewriteUrl: (raw) => rewriteLegacyUrl(raw.url ?? '/'),
    clientErrorHandler,
    ...(opts.https ? { serverFactory: httpsServerFactory(opts.https) } : {}),
    // The router's own errors (bad percent-encoding, overlong parameter) are answered before any hook runs.
    frameworkErrors: (error, req, reply) => {
      const merr = fastifyErrorToMatrix(error) ?? new MatrixError('M_UNKNOWN', 'Bad request', {}, 400);
      req.log.info(
        { method: req.method, url: safeUrl(req.originalUrl), status: merr.status, code: error.code },
        'request refused by the router',
      );
      const json = JSON.stringify(merr.toJSON());
      reply.raw.writeHead(merr.status, {
        ...CORS_HEADERS,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(json),
      });
      reply.raw.end(json);
    },
  });

  // Once authentication sets the requester, every later log line of the request carries its user id.
  const requesterKey = Symbol('requester');
  type WithRequester = FastifyRequest & { [requesterKey]?: Requester | null };
  app.decorateRequest('requester', {
    getter(this: FastifyRequest) {
      return (this as WithRequester)[requesterKey] ?? null;
    },
    setter(this: FastifyRequest, value: Requester | null) {
      (this as WithRequester)[requesterKey] = value;
      if (value) this.log = this.log.child({ user_id: value.userId });
    },
  });

  const tracking = { ids: new Set<string>(), idle: new Set<() => void>() };
  inFlight.set(app, tracking);
  const done = (id: string): void => {
    tracking.ids.delete(id);
    if (tracking.ids.size > 0) return;
    for (const resolve of tracking.idle) resolve();
    tracking.idle.clear();
  };
  app.addHook('onRequest', async (req) => {
    tracking.ids.add(req.id);
  });
  app.addHook('onResponse', async (req) => done(req.id));
  app.addHook('onRequestAbort', async (req) => done(req.id));

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
    try {
      done(null, parseJsonBody(req, body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  // Every registered (path, method) pair, so that an unknown method on a known path is a 405, not a 404.
  const known: { regex: RegExp; methods: Set<string> }[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (methods.includes('OPTIONS')) return;
    known.push({ regex: routeRegex(route.url), methods: new Set(methods) });
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.headers(CORS_HEADERS);
    req.log.debug({ method: req.method, url: safeUrl(req.originalUrl) }, 'request');
  });

  app.addHook('onResponse', async (req, reply) => {
    req.log.info(
      {
        method: req.method,
        url: safeUrl(req.originalUrl),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      'request done',
    );
  });

  // Fastify answers serialized objects as "application/json; charset=utf-8"; Matrix clients and SyTest expect
  // exactly "application/json" (JSON is UTF-8 by definition). Streams and buffers (media) keep their own type.
  app.addHook('onSend', async (_req, reply, payload) => {
    if (
      typeof payload === 'string' &&
      reply.getHeader('content-type') === 'application/json; charset=utf-8'
    ) {
      reply.header('content-type', 'application/json');
    }
    return payload;
  });

  // NUL cannot be stored in a PostgreSQL text column, so no path or query parameter may carry one.
  app.addHook('preValidation', async (req) => {
    for (const source of [req.params, req.query]) {
      if (!source || typeof source !== 'object') continue;
      for (const [name, value] of Object.entries(source as Record<string, unknown>)) {
        const values = Array.isArray(value) ? (value as unknown[]) : [value];
        if (values.some((v) => typeof v === 'string' && v.includes('\u0000'))) {
          throw new MatrixError('M_INVALID_PARAM', `Parameter ${name} may not contain U+0000`);
        }
      }
    }
  });

  app.options('/*', async (_req, reply) => reply.code(204).send());

  app.setNotFoundHandler(async (req, reply) => {
    const path = (req.url.split('?')[0] ?? '').replace(/\/+$/, '') || '/';
    const other = known.some((r) => r.regex.test(path) && !r.methods.has(req.method));
    const err = other
      ? new MatrixError('M_UNRECOGNIZED', `Method ${req.method} is not allowed on this endpoint`, {}, 405)
      : new MatrixError('M_UNRECOGNIZED', 'Unrecognized request');
    return reply.code(err.status).send(err.toJSON());
  });

  app.setErrorHandler(async (error: FastifyError | MatrixError | Error, req, reply) => {
    let merr: MatrixError | undefined;
    if (error instanceof MatrixError) merr = error;
    else if ('code' in error && typeof error.code === 'string')
      merr = fastifyErrorToMatrix(error as FastifyError);
    const unavailable = merr ? undefined : databaseUnavailable(error);
    if (unavailable) {
      req.log.warn({ err: error, reqId: req.id }, 'database unavailable');
      merr = new MatrixError('M_UNKNOWN', unavailable, {}, 503);
      return reply.code(merr.status).send(merr.toJSON());
    }
    if (!merr) {
      req.log.error({ err: error, reqId: req.id, url: safeUrl(req.originalUrl) }, 'internal error');
      merr = new MatrixError('M_UNKNOWN', `Internal server error (request ${req.id})`);
    } else if (merr.status >= 500) {
      req.log.error({ err: error, reqId: req.id }, 'server error');
    }
    return reply.code(merr.status).send(merr.toJSON());
  });

  return app;
}
