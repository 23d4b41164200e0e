/** Synapse-compatible media admin API (/_synapse/admin/v1/media/...): quarantine, protect and delete local media. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { MEDIA_ID, type MediaService } from '../../media/service.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError, invalidParam, notFound } from '../errors.js';
import { parseParams, parseQuery } from '../validate.js';

export type MediaAdminDeps = Pick<ApiDeps, 'config' | 'auth' | 'remoteMedia'> & { media: MediaService };

const MediaParams = z.object({ serverName: z.string(), mediaId: z.string() });
const DeleteQuery = z.looseObject({
  before_ts: z.string().regex(/^\d+$/, 'must be a timestamp in milliseconds').transform(Number),
  size_gt: z.string().regex(/^\d+$/, 'must be a non-negative integer').transform(Number).default(0),
  keep_profiles: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .default(true),
});

const PurgeQuery = z.looseObject({
  before_ts: z.string().regex(/^\d+$/, 'must be a timestamp in milliseconds').transform(Number),
});

export function mediaAdminRoutes(app: FastifyInstance, deps: MediaAdminDeps): void {
  const { config, auth, media } = deps;
  const guard = { preHandler: auth.requireAdmin };

  function localMedia(params: unknown): string {
    const p = parseParams(MediaParams, params);
    if (!MEDIA_ID.test(p.mediaId)) throw invalidParam('Invalid media ID');
    if (p.serverName !== config.server_name) {
      throw new MatrixError('M_UNKNOWN', 'Can only act on local media', {}, 400);
    }
    return p.mediaId;
  }

  /** POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId} */
  app.post('/_synapse/admin/v1/media/quarantine/:serverName/:mediaId', guard, async (req) => {
    // As Synapse: protected media is silently left alone, and an unknown id is not an error.
    await media.quarantine(localMedia(req.params), requester(req).userId);
    return {};
  });

  /** POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId} */
  app.post('/_synapse/admin/v1/media/unquarantine/:serverName/:mediaId', guard, async (req) => {
    await media.quarantine(localMedia(req.params), null);
    return {};
  });

  /** POST /_synapse/admin/v1/media/protect/{mediaId} and .../unprotect/{mediaId} */
  for (const [path, safe] of [
    ['protect', true],
    ['unprotect', false],
  ] as const) {
    app.post(`/_synapse/admin/v1/media/${path}/:mediaId`, guard, async (req) => {
      const { mediaId } = parseParams(z.object({ mediaId: z.string() }), req.params);
      if (!MEDIA_ID.test(mediaId)) throw invalidParam('Invalid media ID');
      await media.protect(mediaId, safe);
      return {};
    });
  }

  /** DELETE /_synapse/admin/v1/media/{serverName}/{mediaId} */
  app.delete('/_synapse/admin/v1/media/:serverName/:mediaId', guard, async (req) => {
    const id = localMedia(req.params);
    const deleted = await media.delete([id]);
    if (deleted.length === 0) throw notFound('Unknown media');
    return { deleted_media: deleted, total: deleted.length };
  });

  /** POST /_synapse/admin/v1/media/delete?before_ts=...&size_gt=...&keep_profiles=... (and the older path) */
  const deleteByAge = async (before: { query: unknown; params: unknown }) => {
    const params = before.params as { serverName?: string };
    if (params.serverName !== undefined && params.serverName !== config.server_name) {
      throw new MatrixError('M_UNKNOWN', 'Can only delete local media', {}, 400);
    }
    const q = parseQuery(DeleteQuery, before.query);
    const deleted = await media.deleteOlderThan({
      beforeTs: q.before_ts,
      sizeGt: q.size_gt,
      keepProfiles: q.keep_profiles,
    });
    return { deleted_media: deleted, total: deleted.length };
  };
  app.post('/_synapse/admin/v1/media/delete', guard, deleteByAge);
  app.post('/_synapse/admin/v1/media/:serverName/delete', guard, deleteByAge);

  /** POST /_synapse/admin/v1/purge_media_cache?before_ts=...: drops cached copies of remote media not used since. */
  app.post('/_synapse/admin/v1/purge_media_cache', guard, async (req) => {
    const q = parseQuery(PurgeQuery, req.query);
    // As Synapse: before_ts under 30,000,000,000 is a timestamp in seconds by mistake (Dec 1970 in milliseconds).
    if (q.before_ts < 30_000_000_000)
      throw new MatrixError(
        'M_INVALID_PARAM',
        'Query parameter before_ts you provided is from the year 1970. Double check that you are providing a timestamp in milliseconds.',
      );
    return { deleted: deps.remoteMedia ? await deps.remoteMedia.purge(q.before_ts) : 0 };
  });
}
