/** Metrics wiring used by the homeserver: one registry, its instrumentation and its routes. */
export { Metrics, eventTypeLabel } from './metrics.js';
export { Instrumentation } from './instrument.js';
export { healthRoutes, metricsRoutes } from './routes.js';
