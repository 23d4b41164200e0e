/** GET /_hearth/metrics and /_synapse/metrics (Prometheus text format); GET /health for load balancers. */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import type { Storage } from '../storage/db.js';
import type { Metrics } from './metrics.js';

const HEALTH_TIMEOUT_MS = 2_000;

export function metricsRoutes(app: FastifyInstance, metrics: Metrics): void {
  const handler = async (_req: FastifyRequest, reply: FastifyReply) => {
    const { contentType, body } = await metrics.scrape();
    return reply.header('content-type', contentType).send(body);
  };
  /** GET /_hearth/metrics */
  app.get('/_hearth/metrics', handler);
  /** GET /_synapse/metrics (existing Synapse dashboards scrape this path) */
  app.get('/_synapse/metrics', handler);
}

/** True when the database answers `SELECT 1` within the timeout. */
export async function databaseAnswers(storage: Storage, timeoutMs = HEALTH_TIMEOUT_MS): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const query = sql`SELECT 1`
    .execute(storage.db)
    .then(() => true)
    .catch(() => false);
  try {
    return await Promise.race([query, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function healthRoutes(app: FastifyInstance, storage: Storage): void {
  /** GET /health: 200 "OK" when the database answers, 503 otherwise (Synapse answers "OK" too). */
  app.get('/health', async (_req, reply) => {
    const ok = await databaseAnswers(storage);
    return reply
      .code(ok ? 200 : 503)
      .header('content-type', 'text/plain; charset=utf-8')
      .send(ok ? 'OK' : 'database unavailable');
  });
}
