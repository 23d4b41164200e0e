/**
 * Feeds the metrics from the running server without the instrumented modules knowing: Fastify hooks for HTTP and
 * sync, a Kysely plugin for query latency, wrappers around the notifier and the room writer, and scrape-time
 * gauges that read caches, damage counts and queue depths.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  sql,
  type KyselyPlugin,
  type OperationNode,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import type { AppServiceSender } from '../appservice/sender.js';
import type { FederationSender } from '../federation/sender/sender.js';
import type { RoomWriter } from '../input/room-writer.js';
import type { DamageReporter } from '../integrity/damage.js';
import {
  cacheMismatchesTotal,
  eventsQuarantinedTotal,
  lastRunProblemsByKind,
} from '../integrity/problems.js';
import type { EventReader } from '../read/event-reader.js';
import type { Storage } from '../storage/db.js';
import type { Notifier } from '../sync/notifier.js';
import { eventTypeLabel } from './labels.js';
import type { Metrics } from './metrics.js';

const SYNC_ROUTES = new Set(['/_matrix/client/v3/sync']);

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the metrics hooks on sync requests: when the request started (ms). */
    syncStartedAt?: number;
  }
}

/** The route template of a request (`/rooms/:roomId/...`), never the URL itself; unknown routes are one label. */
export function routeLabel(req: FastifyRequest): string {
  return req.routeOptions.url ?? 'unmatched';
}

/** Per user, when the notifier last woke one of their long-polls (ms); read once by the sync response. */
class WakeTimes {
  #byUser = new Map<string, number>();
  mark(userId: string, at: number): void {
    if (this.#byUser.size > 100_000) this.#byUser.clear();
    this.#byUser.set(userId, at);
  }
  take(userId: string, since: number): number | undefined {
    const at = this.#byUser.get(userId);
    if (at === undefined || at < since) return undefined;
    this.#byUser.delete(userId);
    return at;
  }
}

export class Instrumentation {
  #wakes = new WakeTimes();

  constructor(readonly metrics: Metrics) {}

  /** HTTP request counts and latency by route template; sync in-flight count, response size and wake latency. */
  http(app: FastifyInstance): void {
    const m = this.metrics;
    app.addHook('onRequest', async (req) => {
      if (!SYNC_ROUTES.has(routeLabel(req))) return;
      req.syncStartedAt = Date.now();
      m.syncInFlight.inc();
    });
    app.addHook('onSend', async (req, _reply, payload) => {
      if (req.syncStartedAt === undefined) return payload;
      if (typeof payload === 'string') m.syncResponseBytes.observe(Buffer.byteLength(payload));
      else if (Buffer.isBuffer(payload)) m.syncResponseBytes.observe(payload.length);
      const userId = req.requester?.userId;
      const woken = userId ? this.#wakes.take(userId, req.syncStartedAt) : undefined;
      if (woken !== undefined) m.syncWakeLatency.observe((Date.now() - woken) / 1000);
      return payload;
    });
    app.addHook('onResponse', async (req, reply) => {
      if (req.syncStartedAt !== undefined) m.syncInFlight.dec();
      const route = routeLabel(req);
      m.httpRequests.inc({ route, method: req.method, status: String(reply.statusCode) });
      m.httpDuration.observe({ route, method: req.method }, reply.elapsedTime / 1000);
    });
  }

  /** Notes when a long-poll is woken, for the wake latency; counts waiters at scrape time. */
  notifier(notifier: Notifier): void {
    const register = notifier.register.bind(notifier);
    notifier.register = (userId, roomIds, timeoutMs) => {
      const waiter = register(userId, roomIds, timeoutMs);
      void waiter.woken.then((woken) => {
        if (woken) this.#wakes.mark(userId, Date.now());
      });
      return waiter;
    };
    this.metrics.gauge(
      'hearth_notifier_waiters',
      'Long-polling syncs registered with the notifier',
      () => notifier.waiting,
    );
  }

  /** Events persisted by type; persistence latency of sends and room creations. */
  writer(writer: RoomWriter): void {
    const m = this.metrics;
    writer.onCommit((batch) => {
      for (const ev of batch.events) m.eventsPersisted.inc({ type: eventTypeLabel(ev.pdu.type) });
    });
    const send = writer.send.bind(writer);
    writer.send = async (...args) => {
      const end = m.persistDuration.startTimer({ op: 'send' });
      try {
        return await send(...args);
      } finally {
        end();
      }
    };
    const createRoom = writer.createRoom.bind(writer);
    writer.createRoom = async (...args) => {
      const end = m.persistDuration.startTimer({ op: 'create_room' });
      try {
        return await createRoom(...args);
      } finally {
        end();
      }
    };
  }

  /** Cache sizes, hits and misses of the event reader's caches. */
  caches(reader: EventReader): void {
    const caches = [reader.events, reader.snapshots];
    const m = this.metrics;
    m.labelledGauge('hearth_cache_size', 'Entries held by a cache', 'cache', () =>
      caches.map((c) => [c.name, c.size]),
    );
    m.labelledGauge(
      'hearth_cache_weight',
      'Weight held by a cache (entries, or state entries)',
      'cache',
      () => caches.map((c) => [c.name, c.weight]),
    );
    m.labelledGauge(
      'hearth_cache_hits_total',
      'Cache lookups that found their key',
      'cache',
      () => caches.map((c) => [c.name, c.hits]),
      'counter',
    );
    m.labelledGauge(
      'hearth_cache_misses_total',
      'Cache lookups that missed',
      'cache',
      () => caches.map((c) => [c.name, c.misses]),
      'counter',
    );
  }

  /** Damaged rows skipped by readers, by kind. */
  damage(damage: DamageReporter): void {
    this.metrics.labelledGauge(
      'hearth_damaged_rows_skipped_total',
      'Damaged rows met and skipped while reading, by kind',
      'kind',
      () => damage.counts.entries(),
      'counter',
    );
  }

  /** The doctor's figures: events quarantined, cache mismatches found by sampling, problems of the last run. */
  integrity(): void {
    const m = this.metrics;
    m.gauge('hearth_events_quarantined', 'Events moved to quarantine by repairs', async () =>
      eventsQuarantinedTotal(),
    );
    m.gauge('hearth_cache_mismatches', 'Cache entries found disagreeing with the database', async () =>
      cacheMismatchesTotal(),
    );
    m.labelledGauge(
      'hearth_doctor_problems',
      'Problems found by the last doctor run, by kind',
      'kind',
      () => Object.entries(lastRunProblemsByKind()),
      'gauge',
    );
  }

  /**
   * The federation queue: PDUs queued per destination, destinations with a queue and in backoff, transactions sent
   * and failed per destination. Destination labels are server names (bounded by the servers this one talks to).
   */
  federationSender(sender: FederationSender): void {
    const m = this.metrics;
    m.labelledGauge(
      'hearth_federation_queue_pdus',
      'PDUs queued for a destination and not yet acknowledged',
      'destination',
      () => sender.queueDepths(),
    );
    m.gauge('hearth_federation_queued_destinations', 'Destinations with queued PDUs', async () => {
      return (await sender.queueDepths()).size;
    });
    m.gauge(
      'hearth_federation_backoff_destinations',
      'Destinations in retry backoff',
      () => sender.backingOff,
    );
    m.labelledGauge(
      'hearth_federation_transactions_total',
      'Transactions acknowledged by a destination',
      'destination',
      () => sender.stats.transactions,
      'counter',
    );
    m.labelledGauge(
      'hearth_federation_transaction_failures_total',
      'Transactions that failed (unreachable destination or error answer)',
      'destination',
      () => sender.stats.failures,
      'counter',
    );
  }

  /** Application service queues: stream positions each is behind, transactions sent and failed, events delivered. */
  appServiceSender(sender: AppServiceSender): void {
    const m = this.metrics;
    m.labelledGauge(
      'hearth_appservice_queue_positions',
      'Stream positions an application service is behind the head (0 when caught up)',
      'appservice',
      () => sender.queueDepths(),
    );
    m.gauge('hearth_appservice_backoff', 'Application services in retry backoff', () => sender.backingOff);
    m.labelledGauge(
      'hearth_appservice_transactions_total',
      'Transactions acknowledged by an application service',
      'appservice',
      () => sender.stats.transactions,
      'counter',
    );
    m.labelledGauge(
      'hearth_appservice_transaction_failures_total',
      'Transactions an application service did not acknowledge (error answer, timeout, unreachable)',
      'appservice',
      () => sender.stats.failures,
      'counter',
    );
    m.labelledGauge(
      'hearth_appservice_events_total',
      'Events delivered to an application service',
      'appservice',
      () => sender.stats.events,
      'counter',
    );
  }

  /** To-device messages waiting for delivery, when the to-device table exists. */
  toDeviceQueue(storage: Storage): void {
    let exists: boolean | undefined;
    this.metrics.gauge('hearth_to_device_queue_depth', 'To-device messages not yet delivered', async () => {
      exists ??= await tableExists(storage, 'to_device_messages');
      if (!exists) return 0;
      const r = await sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM to_device_messages`.execute(
        storage.db,
      );
      return Number(r.rows[0]?.n ?? 0);
    });
  }

  /** A Kysely plugin that times every query, labelled by SQL operation and first table. */
  queryTimer(): KyselyPlugin {
    const started = new WeakMap<object, { at: bigint; operation: string; table: string }>();
    const hist = this.metrics.dbQueryDuration;
    return {
      transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
        started.set(args.queryId, { at: process.hrtime.bigint(), ...describe(args.node) });
        return args.node;
      },
      async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
        const s = started.get(args.queryId);
        if (s) {
          started.delete(args.queryId);
          hist.observe(
            { operation: s.operation, table: s.table },
            Number(process.hrtime.bigint() - s.at) / 1e9,
          );
        }
        return args.result;
      },
    };
  }
}

async function tableExists(storage: Storage, table: string): Promise<boolean> {
  const q =
    storage.engine === 'sqlite'
      ? sql<{ n: number }>`SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ${table}`
      : sql<{ n: number }>`SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name = ${table}`;
  const r = await q.execute(storage.db);
  return Number(r.rows[0]?.n ?? 0) > 0;
}

interface NodeLike extends OperationNode {
  from?: { froms?: readonly OperationNode[] };
  into?: OperationNode;
  table?: OperationNode;
  sqlFragments?: readonly string[];
}

/** The first SQL keyword and the first table of a query: labels of bounded cardinality, no values. */
export function describe(node: RootOperationNode): { operation: string; table: string } {
  const n = node as NodeLike;
  switch (node.kind) {
    case 'SelectQueryNode':
      return { operation: 'select', table: tableName(n.from?.froms?.[0]) };
    case 'InsertQueryNode':
      return { operation: 'insert', table: tableName(n.into) };
    case 'UpdateQueryNode':
      return { operation: 'update', table: tableName(n.table) };
    case 'DeleteQueryNode':
      return { operation: 'delete', table: tableName(n.from?.froms?.[0]) };
    case 'RawNode': {
      const text = (n.sqlFragments ?? []).join(' ');
      const op = /^\s*(?:WITH\b[\s\S]*?\)\s*)?([A-Za-z]+)/.exec(text)?.[1]?.toLowerCase() ?? 'raw';
      const table = /\b(?:FROM|INTO|UPDATE|TABLE)\s+"?([A-Za-z_][A-Za-z0-9_]*)/i.exec(text)?.[1] ?? 'none';
      return { operation: KEYWORDS.has(op) ? op : 'other', table: table.toLowerCase() };
    }
    default:
      return { operation: node.kind.replace(/Node$/, '').toLowerCase(), table: 'none' };
  }
}

const KEYWORDS = new Set([
  'select',
  'insert',
  'update',
  'delete',
  'create',
  'drop',
  'alter',
  'pragma',
  'begin',
  'commit',
]);

/** The table name inside a TableNode, possibly wrapped in an alias or schema. */
function tableName(node: OperationNode | undefined): string {
  let cur: unknown = node;
  for (let i = 0; i < 4 && cur && typeof cur === 'object'; i++) {
    const o = cur as { kind?: string; node?: unknown; table?: unknown; identifier?: { name?: string } };
    if (o.kind === 'IdentifierNode' && o.identifier === undefined)
      return String((cur as { name?: string }).name);
    if (o.kind === 'TableNode') cur = o.table;
    else if (o.kind === 'SchemableIdentifierNode') return o.identifier?.name ?? 'unknown';
    else if (o.kind === 'AliasNode') cur = o.node;
    else break;
  }
  return 'other';
}
