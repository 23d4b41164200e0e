/**
 * Metrics wiring used by the homeserver: one registry, its instrumentation and its routes. prom-client is loaded
 * only by loadMetrics(), so a server with metrics off never loads it (idle footprint).
 */
import type { Metrics } from './metrics.js';

export type { Metrics } from './metrics.js';
export { eventTypeLabel } from './labels.js';
export { Instrumentation } from './instrument.js';
export { healthRoutes, metricsRoutes } from './routes.js';

/** A fresh metrics registry; the first call loads prom-client. */
export async function loadMetrics(): Promise<Metrics> {
  const { Metrics: MetricsClass } = await import('./metrics.js');
  return new MetricsClass();
}
