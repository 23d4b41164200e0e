/**
 * Server-server API "Content Repository": this server's media for other servers, X-Matrix authenticated.
 * Both answer multipart/mixed with two parts: `{}` as application/json, then the file with its Content-Type and
 * Content-Disposition. Only local media is served: another server's media, unknown or quarantined ids are 404.
 */
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import { mediaHeaders } from '../../media/headers.js';
import { mediaMultipartFrame, newBoundary } from '../../media/multipart.js';
import { MEDIA_ID, type MediaService, type ServedFile } from '../../media/service.js';
import { DownloadQuery, mediaTimeout, sendFile, ThumbnailQuery } from '../client/media.js';
import { invalidParam, notFound } from '../errors.js';
import { parseParams, parseQuery } from '../validate.js';

export interface FederationMediaDeps {
  media: MediaService;
  authenticate: preHandlerAsyncHookHandler;
}

const Params = z.object({ mediaId: z.string() });

function mediaIdOf(params: unknown): string {
  const { mediaId } = parseParams(Params, params);
  if (!MEDIA_ID.test(mediaId)) throw invalidParam('Invalid media ID');
  return mediaId;
}

/** Streams `file` as the second part of a multipart/mixed answer (the length is known, so Content-Length is set). */
async function sendMultipart(
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
  const headers = mediaHeaders(file.contentType, fileName);
  const boundary = newBoundary();
  const { head, tail } = mediaMultipartFrame(boundary, {
    'Content-Type': headers['content-type'] as string,
    'Content-Disposition': headers['content-disposition'] as string,
  });
  const handle = fh;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await handle.close().catch(() => undefined);
  };
  // Also when the answer is abandoned before the generator starts (its finally would not run).
  reply.raw.once('close', () => void close());
  async function* parts(): AsyncGenerator<Buffer> {
    try {
      yield head;
      if (file.length > 0) {
        for await (const chunk of handle.createReadStream({ autoClose: false })) yield chunk as Buffer;
      }
      yield tail;
    } finally {
      await close();
    }
  }
  return reply
    .header('content-type', `multipart/mixed; boundary=${boundary}`)
    .header('content-length', head.length + file.length + tail.length)
    .send(Readable.from(parts()));
}

export function federationMediaRoutes(app: FastifyInstance, deps: FederationMediaDeps): void {
  const { media } = deps;
  const guard = { preHandler: deps.authenticate };

  /** GET /_matrix/federation/v1/media/download/{mediaId} */
  app.get('/_matrix/federation/v1/media/download/:mediaId', guard, async (req, reply) => {
    const id = mediaIdOf(req.params);
    const q = parseQuery(DownloadQuery, req.query);
    const row = await media.lookup(id, mediaTimeout(q.timeout_ms));
    const file = { path: media.store.contentPath(id), contentType: row.media_type, length: row.media_length };
    return sendMultipart(req, reply, file, row.upload_name);
  });

  /** GET /_matrix/federation/v1/media/thumbnail/{mediaId} */
  app.get('/_matrix/federation/v1/media/thumbnail/:mediaId', guard, async (req, reply) => {
    const id = mediaIdOf(req.params);
    const q = parseQuery(ThumbnailQuery, req.query);
    if (q.width === 0 || q.height === 0) throw invalidParam('width and height must be positive');
    const row = await media.lookup(id, mediaTimeout(q.timeout_ms));
    const file = await media.thumbnail(row, {
      width: q.width,
      height: q.height,
      method: q.method,
      animated: q.animated ?? false,
    });
    return sendMultipart(req, reply, file, null);
  });
}

const LegacyParams = z.object({
  serverName: z.string(),
  mediaId: z.string(),
  fileName: z.string().optional(),
});

/**
 * The legacy unauthenticated download and thumbnail paths on the federation listener, as servers before Matrix v1.11
 * fetch remote media (`GET /_matrix/media/r0/download/{serverName}/{mediaId}?allow_remote=false`). Only this
 * server's media uploaded while authenticated media was off is served (the client API's legacy rule); anything else
 * is 404, so nothing is proxied for another server.
 */
export function legacyFederationMediaRoutes(
  app: FastifyInstance,
  deps: { media: MediaService; serverName: string },
): void {
  const { media } = deps;
  async function localRow(params: unknown, timeoutMs: number | undefined) {
    const p = parseParams(LegacyParams, params);
    if (p.serverName !== deps.serverName || !MEDIA_ID.test(p.mediaId)) throw notFound('Not found');
    const row = await media.lookup(p.mediaId, mediaTimeout(timeoutMs));
    if (row.authenticated) throw notFound('Not found');
    return { id: p.mediaId, fileName: p.fileName, row };
  }
  const download = async (req: FastifyRequest, reply: FastifyReply) => {
    const q = parseQuery(DownloadQuery, req.query);
    const { id, fileName, row } = await localRow(req.params, q.timeout_ms);
    const file = { path: media.store.contentPath(id), contentType: row.media_type, length: row.media_length };
    return sendFile(req, reply, file, fileName ?? row.upload_name);
  };
  app.get('/_matrix/media/v3/download/:serverName/:mediaId', download);
  app.get('/_matrix/media/v3/download/:serverName/:mediaId/:fileName', download);
  app.get('/_matrix/media/v3/thumbnail/:serverName/:mediaId', async (req, reply) => {
    const q = parseQuery(ThumbnailQuery, req.query);
    if (q.width === 0 || q.height === 0) throw invalidParam('width and height must be positive');
    const { row } = await localRow(req.params, q.timeout_ms);
    const size = { width: q.width, height: q.height, method: q.method, animated: q.animated ?? false };
    return sendFile(req, reply, await media.thumbnail(row, size), null);
  });
}
