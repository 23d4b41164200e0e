/**
 * Every Prometheus metric Hearth exports, in one registry per server. Labels carry route templates, methods,
 * status codes, SQL keywords, table names, cache names and well-known event types only: never user ids, room ids,
 * URLs or content, so that a scrape exposes no user data.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const SIZE_BUCKETS = [256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304];

export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: 'hearth_http_requests_total',
    help: 'HTTP requests answered, by route template, method and status code',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: 'hearth_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by route template and method',
    labelNames: ['route', 'method'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly syncInFlight = new Gauge({
    name: 'hearth_sync_in_flight',
    help: 'Sync requests being computed or long-polling now',
    registers: [this.registry],
  });

  readonly syncWakeLatency = new Histogram({
    name: 'hearth_sync_wake_latency_seconds',
    help: 'Time from the commit that woke a long-polling sync to its response being sent',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly syncResponseBytes = new Histogram({
    name: 'hearth_sync_response_bytes',
    help: 'Size of sync response bodies',
    buckets: SIZE_BUCKETS,
    registers: [this.registry],
  });

  readonly eventsPersisted = new Counter({
    name: 'hearth_events_persisted_total',
    help: 'Events committed, by event type (m.* types only; others count as "other")',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  readonly persistDuration = new Histogram({
    name: 'hearth_persist_duration_seconds',
    help: 'Time to persist an event batch through the room writer (room queue, auth checks and one transaction)',
    labelNames: ['op'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly dbQueryDuration = new Histogram({
    name: 'hearth_db_query_duration_seconds',
    help: 'Database query latency, by SQL operation and table',
    labelNames: ['operation', 'table'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly adminOperations = new Counter({
    name: 'hearth_admin_operations_total',
    help: 'Admin API operations that changed data, by operation',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    // Process memory, CPU, event-loop lag, GC, handles: prom-client's standard families (no prefix, as dashboards expect).
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** A gauge read at scrape time. */
  gauge(name: string, help: string, read: () => number | Promise<number>): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        this.set(await read());
      },
    });
  }

  /** A labelled gauge read at scrape time; `read` returns label value -> number. */
  labelledGauge(
    name: string,
    help: string,
    label: string,
    read: () => Iterable<[string, number]> | Promise<Iterable<[string, number]>>,
    kind: 'gauge' | 'counter' = 'gauge',
  ): void {
    const registers = [this.registry];
    if (kind === 'counter') {
      new Counter({
        name,
        help,
        labelNames: [label],
        registers,
        async collect() {
          this.reset();
          for (const [k, v] of await read()) this.inc({ [label]: k }, v);
        },
      });
      return;
    }
    new Gauge({
      name,
      help,
      labelNames: [label],
      registers,
      async collect() {
        this.reset();
        for (const [k, v] of await read()) this.set({ [label]: k }, v);
      },
    });
  }

  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

export { eventTypeLabel } from './labels.js';
