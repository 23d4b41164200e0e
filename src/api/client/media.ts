/**
 * Content repository (client-server API "Content repository"): authenticated media under /_matrix/client/v1/media,
 * uploads under /_matrix/media/v3, and the legacy unauthenticated downloads and thumbnails, which serve only media
 * uploaded while enable_authenticated_media was off (Synapse's behaviour).
 */
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseServerName } from '../../federation/server-name.js';
import { mediaHeaders, parseRange } from '../../media/headers.js';
import type { RemoteMediaCache } from '../../media/remote-media.js';
import { MEDIA_ID, SERVER_NAME, type MediaService, type ServedFile } from '../../media/service.js';
import type { RemoteMediaRow } from '../../storage/remote-media.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError, invalidParam, notFound, unrecognized } from '../errors.js';
import { parseParams, parseQuery } from '../validate.js';

export type MediaDeps = Pick<ApiDeps, 'config' | 'auth' | 'rateLimiter' | 'remoteMedia'> & {
  media: MediaService;
};

/** Synapse's default and largest wait for the content of an async upload. */
const DEFAULT_TIMEOUT_MS = 20_000;
const MAX_TIMEOUT_MS = 60_000;
const MAX_FILENAME_LENGTH = 255;

const MediaParams = z.object({
  serverName: z.string(),
  mediaId: z.string(),
  fileName: z.string().optional(),
});

const Int = z
  .string()
  .regex(/^\d{1,9}$/, 'must be a non-negative integer')
  .transform(Number);
const Bool = z.enum(['true', 'false']).transform((v) => v === 'true');

export const DownloadQuery = z.looseObject({ timeout_ms: Int.optional(), allow_remote: Bool.optional() });
/** The thumbnail parameters (also of the federation thumbnail endpoint). */
export const ThumbnailQuery = z.looseObject({
  width: Int,
  height: Int,
  method: z.enum(['crop', 'scale']).default('scale'),
  animated: Bool.optional(),
  timeout_ms: Int.optional(),
  allow_remote: Bool.optional(),
});
/** timeout_ms as asked, Synapse's default when absent, at most MAX_TIMEOUT_MS. */
export const mediaTimeout = (ms: number | undefined): number =>
  Math.min(ms ?? DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS);

const UploadQuery = z.looseObject({ filename: z.string().max(MAX_FILENAME_LENGTH).optional() });

/** Fastify hands an upload route the request stream itself (see uploadRoutes). */
function bodyStream(req: FastifyRequest): AsyncIterable<Buffer> | Iterable<Buffer> {
  return req.body instanceof Readable ? (req.body as AsyncIterable<Buffer>) : [];
}

/** Sends a stored file (honouring a Range header) with the media headers; a missing file is 404. */
export async function sendFile(
  req: FastifyRequest,
  reply: FastifyReply,
  file: ServedFile,
  fileName: string | null,
): Promise<FastifyReply> {
  let fh;
  try {
    fh = await open(file.path, 'r');
  } catch (err) {
    req.log.error({ err, path: file.path }, 'media file missing');
    throw notFound('Not found');
  }
  const range = parseRange(req.headers.range, file.length);
  if (range === 'unsatisfiable') {
    await fh.close();
    return reply
      .code(416)
      .header('content-range', `bytes */${file.length}`)
      .send(new MatrixError('M_UNKNOWN', 'Range not satisfiable', {}, 416).toJSON());
  }
  reply.headers(mediaHeaders(file.contentType, fileName));
  if (range) {
    reply
      .code(206)
      .header('content-range', `bytes ${range.start}-${range.end}/${file.length}`)
      .header('content-length', range.end - range.start + 1);
    return reply.send(fh.createReadStream({ start: range.start, end: range.end }));
  }
  reply.header('content-length', file.length);
  if (file.length === 0) {
    await fh.close();
    return reply.send(Buffer.alloc(0));
  }
  return reply.send(fh.createReadStream());
}

export function mediaRoutes(app: FastifyInstance, deps: MediaDeps): void {
  const { config, auth, media } = deps;
  const guard = { preHandler: auth.requireUser };

  /** The media named in the path: 400 for malformed server names and ids. */
  function target(params: unknown): { serverName: string; mediaId: string; fileName: string | undefined } {
    const p = parseParams(MediaParams, params);
    if (
      !SERVER_NAME.test(p.serverName) ||
      !parseServerName(p.serverName) ||
      /^\.|\.\.|\.(:|$)/.test(p.serverName)
    )
      throw invalidParam('Invalid server name');
    if (!MEDIA_ID.test(p.mediaId)) throw invalidParam('Invalid media ID');
    return { serverName: p.serverName, mediaId: p.mediaId, fileName: p.fileName };
  }

  /**
   * The cached copy of another server's media, fetched over federation the first time unless allow_remote=false.
   * The legacy endpoints, while authenticated media is enforced, serve only copies cached before it was (Synapse).
   */
  async function remoteRow(
    t: { serverName: string; mediaId: string },
    q: { allow_remote?: boolean | undefined; timeout_ms?: number | undefined },
    legacy: boolean,
  ): Promise<{ remote: RemoteMediaCache; row: RemoteMediaRow }> {
    const remote = deps.remoteMedia;
    if (!remote || q.allow_remote === false) throw notFound('Not found');
    const frozen = legacy && config.enable_authenticated_media;
    const row = await remote.get(t.serverName, t.mediaId, {
      timeoutMs: mediaTimeout(q.timeout_ms),
      fetch: !frozen,
    });
    if (legacy && row.authenticated) throw notFound('Not found');
    return { remote, row };
  }

  const download = (legacy: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
    const t = target(req.params);
    const { mediaId: id, fileName } = t;
    const q = parseQuery(DownloadQuery, req.query);
    if (t.serverName !== config.server_name) {
      const { remote, row } = await remoteRow(t, q, legacy);
      const path = remote.contentPath(row.filesystem_id);
      const file = { path, contentType: row.media_type, length: row.media_length };
      return sendFile(req, reply, file, fileName ?? row.upload_name);
    }
    const row = await media.lookup(id, mediaTimeout(q.timeout_ms));
    if (legacy && row.authenticated) throw notFound('Not found');
    const file = { path: media.store.contentPath(id), contentType: row.media_type, length: row.media_length };
    return sendFile(req, reply, file, fileName ?? row.upload_name);
  };

  const thumbnail = (legacy: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
    const t = target(req.params);
    const id = t.mediaId;
    const q = parseQuery(ThumbnailQuery, req.query);
    if (q.width === 0 || q.height === 0) throw invalidParam('width and height must be positive');
    const size = { width: q.width, height: q.height, method: q.method, animated: q.animated ?? false };
    if (t.serverName !== config.server_name) {
      const { remote, row } = await remoteRow(t, q, legacy);
      return sendFile(req, reply, await remote.thumbnail(row, size), null);
    }
    const row = await media.lookup(id, mediaTimeout(q.timeout_ms));
    if (legacy && row.authenticated) throw notFound('Not found');
    return sendFile(req, reply, await media.thumbnail(row, size), null);
  };

  const mediaConfig = async () => ({ 'm.upload.size': config.max_upload_size });
  const previewUrl = async () => {
    throw unrecognized(
      config.url_preview_enabled
        ? 'URL previews are not supported by this server yet: it makes no outbound HTTP requests'
        : 'URL previews are disabled on this server',
    );
  };

  /** GET /_matrix/client/v1/media/config */
  app.get('/_matrix/client/v1/media/config', guard, mediaConfig);
  /** GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}] */
  app.get('/_matrix/client/v1/media/download/:serverName/:mediaId', guard, download(false));
  app.get('/_matrix/client/v1/media/download/:serverName/:mediaId/:fileName', guard, download(false));
  /** GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId} */
  app.get('/_matrix/client/v1/media/thumbnail/:serverName/:mediaId', guard, thumbnail(false));
  /** GET /_matrix/client/v1/media/preview_url */
  app.get('/_matrix/client/v1/media/preview_url', guard, previewUrl);

  /** GET /_matrix/media/v3/config (deprecated) */
  app.get('/_matrix/media/v3/config', guard, mediaConfig);
  /** GET /_matrix/media/v3/preview_url (deprecated) */
  app.get('/_matrix/media/v3/preview_url', guard, previewUrl);
  /** GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}] (deprecated, unauthenticated) */
  app.get('/_matrix/media/v3/download/:serverName/:mediaId', download(true));
  app.get('/_matrix/media/v3/download/:serverName/:mediaId/:fileName', download(true));
  /** GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} (deprecated, unauthenticated) */
  app.get('/_matrix/media/v3/thumbnail/:serverName/:mediaId', thumbnail(true));

  /** POST /_matrix/media/v1/create */
  app.post('/_matrix/media/v1/create', guard, async (req) => {
    const r = requester(req);
    if (!r.isAdmin) deps.rateLimiter.check(`media_upload:${r.userId}`, config.rate_limiting.media_upload);
    const { mediaId: id, unusedExpiresAt } = await media.create(r.userId);
    return { content_uri: media.mxc(id), unused_expires_at: unusedExpiresAt };
  });

  void app.register(async (uploads) => uploadRoutes(uploads, deps));
}

/**
 * The upload routes, in their own Fastify context: its only content-type parser hands the request stream to the
 * handler unread, so uploads are streamed to disk, and the JSON body limit does not apply to them.
 */
function uploadRoutes(app: FastifyInstance, deps: MediaDeps): void {
  const { config, auth, media } = deps;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  function uploadMeta(req: FastifyRequest): { contentType: string; fileName: string | null } {
    const r = requester(req);
    if (!r.isAdmin) deps.rateLimiter.check(`media_upload:${r.userId}`, config.rate_limiting.media_upload);
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > config.max_upload_size) {
      throw new MatrixError('M_TOO_LARGE', `Upload exceeds the limit of ${config.max_upload_size} bytes`);
    }
    const q = parseQuery(UploadQuery, req.query);
    const contentType = req.headers['content-type']?.trim() || 'application/octet-stream';
    return { contentType, fileName: q.filename || null };
  }

  const opts = { preHandler: auth.requireUser, bodyLimit: config.max_upload_size };

  /** POST /_matrix/media/v3/upload */
  app.post('/_matrix/media/v3/upload', opts, async (req) => {
    const meta = uploadMeta(req);
    const id = await media.upload(requester(req).userId, bodyStream(req), meta);
    return { content_uri: media.mxc(id) };
  });

  /** PUT /_matrix/media/v3/upload/{serverName}/{mediaId} */
  app.put('/_matrix/media/v3/upload/:serverName/:mediaId', opts, async (req) => {
    const meta = uploadMeta(req);
    const p = parseParams(MediaParams, req.params);
    if (!SERVER_NAME.test(p.serverName)) throw invalidParam('Invalid server name');
    if (!MEDIA_ID.test(p.mediaId)) throw invalidParam('Invalid media ID');
    if (p.serverName !== config.server_name) throw notFound('Non-local server name specified');
    await media.uploadTo(requester(req).userId, p.mediaId, bodyStream(req), meta);
    return {};
  });
}
