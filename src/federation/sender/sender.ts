/**
 * The per-destination outbound queue: one transaction in flight per destination, at most 50 PDUs and 100 EDUs per
 * transaction (the spec's limits), PDUs in the order they were fanned out, EDUs from the durable outbox (receipts,
 * device lists, to-device) plus in-memory ones (typing, which is worthless after a restart).
 *
 * A failed transaction puts the destination in backoff (backoff.ts), persisted so a restart keeps it; its outbox rows
 * stay. When a destination comes back after an outage with more than `catchUpThreshold` PDUs queued, the backlog is
 * collapsed to the newest PDU of each room (Synapse's catch-up): the remote fetches the gap with get_missing_events.
 * Transaction ids are `<start time in base 36>-<counter>`: unique per destination across restarts.
 */
import type { Logger } from 'pino';
import type { Storage } from '../../storage/db.js';
import { getEventRowsByNid } from '../../storage/events.js';
import {
  collapseToLatestPerRoom,
  countQueuedPdus,
  deleteOutboxRows,
  destinationsWithOutbox,
  getDestination,
  joinedServersOfRoom,
  outboxBatch,
  outboxDepths,
  putDestination,
  type DestinationState,
} from '../../storage/federation-queue.js';
import type { FederationClient } from '../client.js';
import { DEFAULT_BACKOFF, nextRetryInterval, type BackoffPolicy } from './backoff.js';
import type { DamageReporter } from '../../integrity/damage.js';
import { Fanout } from './fanout.js';

/** A stored JSON object, or undefined when the text is not one. */
function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

export const MAX_PDUS_PER_TXN = 50;
export const MAX_EDUS_PER_TXN = 100;
/** In-memory EDUs kept per destination at most (typing); older ones are dropped. */
const MAX_EPHEMERAL = 1_000;

export interface Edu {
  edu_type: string;
  content: Record<string, unknown>;
}

export interface FederationSenderOptions {
  storage: Storage;
  serverName: string;
  client: Pick<FederationClient, 'put'>;
  log: Logger;
  /** presence.enabled */
  presenceEnabled?: boolean | undefined;
  backoff?: BackoffPolicy;
  /** Queued PDUs above which a destination back from an outage gets only the newest event per room. */
  catchUpThreshold?: number;
  now?: () => number;
  /** Where an unreadable queued row is reported (it is skipped, never sent, never retried forever). */
  damage?: Pick<DamageReporter, 'report'> | undefined;
}

interface Destination {
  running: Promise<void> | undefined;
  again: boolean;
  timer: NodeJS.Timeout | undefined;
  ephemeral: Edu[];
  /** Known to be in backoff. */
  backingOff: boolean;
  /** Its persisted retry state has been read (so a request from it needs no database read when healthy). */
  checked: boolean;
}

export interface SenderStats {
  transactions: Map<string, number>;
  failures: Map<string, number>;
  pdusSent: number;
  edusSent: number;
}

export class FederationSender {
  readonly fanout: Fanout;
  readonly stats: SenderStats = { transactions: new Map(), failures: new Map(), pdusSent: 0, edusSent: 0 };
  readonly #opts: FederationSenderOptions;
  readonly #backoff: BackoffPolicy;
  readonly #now: () => number;
  readonly #dests = new Map<string, Destination>();
  readonly #txnPrefix = Date.now().toString(36);
  #txnCounter = 0;
  #closed = false;

  constructor(opts: FederationSenderOptions) {
    this.#opts = opts;
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.#now = opts.now ?? Date.now;
    this.fanout = new Fanout({
      storage: opts.storage,
      serverName: opts.serverName,
      log: opts.log,
      presenceEnabled: opts.presenceEnabled,
      onQueued: (dests) => {
        for (const d of dests) this.wake(d);
      },
    });
  }

  /** Fans out what a previous run left and wakes every destination with a queue. */
  async start(): Promise<void> {
    await this.fanout.start();
    for (const d of await destinationsWithOutbox(this.#opts.storage.db)) this.wake(d);
  }

  /** Tries to send to the destination now, unless it is in backoff. */
  wake(destination: string): void {
    if (this.#closed || destination === this.#opts.serverName) return;
    const d = this.#dest(destination);
    if (d.running) {
      d.again = true;
      return;
    }
    d.running = this.#run(destination, d).finally(() => {
      d.running = undefined;
      if (d.again && !this.#closed) {
        d.again = false;
        this.wake(destination);
      }
    });
  }

  /**
   * The destination sent us a signed request, so it is up: its backoff ends and its queue is sent now (Synapse
   * resets the retry timings of a server it hears from).
   */
  remoteIsUp(origin: string): void {
    if (this.#closed || origin === this.#opts.serverName) return;
    const d = this.#dest(origin);
    // Known healthy: nothing to do (the common case costs no database read).
    if (d.checked && !d.backingOff) return;
    d.checked = true;
    d.backingOff = false;
    if (d.timer) clearTimeout(d.timer);
    d.timer = undefined;
    const { db } = this.#opts.storage;
    void getDestination(db, origin)
      .then(async (s) => {
        // A backoff persisted by an earlier run counts too.
        if (!s || (s.retryIntervalMs === 0 && s.failureCount === 0)) return;
        await putDestination(db, { ...s, retryIntervalMs: 0, retryLastTs: 0 });
        this.wake(origin);
      })
      .catch((err: unknown) =>
        this.#opts.log.warn({ err, destination: origin }, 'cannot reset retry timings'),
      );
  }

  /** Queues in-memory EDUs (typing) for the destinations; dropped if the destination is in backoff. */
  sendEphemeral(destinations: Iterable<string>, edu: Edu): void {
    for (const destination of destinations) {
      if (destination === this.#opts.serverName) continue;
      const d = this.#dest(destination);
      if (d.backingOff) continue;
      d.ephemeral.push(edu);
      if (d.ephemeral.length > MAX_EPHEMERAL) d.ephemeral.splice(0, d.ephemeral.length - MAX_EPHEMERAL);
      this.wake(destination);
    }
  }

  /** Relays a local user's typing update to the other servers in the room (TypingStore.subscribe). */
  readonly relayTyping = (roomId: string, userId: string, typing: boolean): void => {
    if (this.#closed || userId.slice(userId.indexOf(':') + 1) !== this.#opts.serverName) return;
    joinedServersOfRoom(this.#opts.storage.db, roomId).then(
      (servers) =>
        this.sendEphemeral(servers, {
          edu_type: 'm.typing',
          content: { room_id: roomId, user_id: userId, typing },
        }),
      (err: unknown) => this.#opts.log.warn({ err }, 'cannot relay typing'),
    );
  };

  /** Queued PDUs per destination (metrics, doctor). */
  queueDepths(): Promise<Map<string, number>> {
    return outboxDepths(this.#opts.storage.db);
  }

  /** Destinations known to be in backoff now. */
  get backingOff(): number {
    let n = 0;
    for (const d of this.#dests.values()) if (d.backingOff) n++;
    return n;
  }

  /** Resolves when nothing is being fanned out or sent (tests). */
  async idle(): Promise<void> {
    await this.fanout.idle();
    for (;;) {
      const running = [...this.#dests.values()].map((d) => d.running).filter((p) => p !== undefined);
      if (running.length === 0) return;
      await Promise.allSettled(running);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const d of this.#dests.values()) if (d.timer) clearTimeout(d.timer);
    await this.fanout.close();
    await Promise.allSettled([...this.#dests.values()].map((d) => d.running));
  }

  #dest(destination: string): Destination {
    let d = this.#dests.get(destination);
    if (!d) {
      d = {
        running: undefined,
        again: false,
        timer: undefined,
        ephemeral: [],
        backingOff: false,
        checked: false,
      };
      this.#dests.set(destination, d);
    }
    return d;
  }

  async #run(destination: string, d: Destination): Promise<void> {
    const { db } = this.#opts.storage;
    try {
      let state = await getDestination(db, destination);
      d.checked = true;
      if (state && state.failureCount > 0) {
        const due = state.retryLastTs + state.retryIntervalMs;
        if (due > this.#now()) {
          d.backingOff = true;
          d.ephemeral = [];
          this.#schedule(destination, d, due - this.#now());
          return;
        }
        // Back from an outage (its backoff ran out, or it sent us a request).
        const threshold = this.#opts.catchUpThreshold ?? MAX_PDUS_PER_TXN * 2;
        if ((await countQueuedPdus(db, destination)) > threshold) {
          const dropped = await collapseToLatestPerRoom(db, destination);
          this.#opts.log.info({ destination, dropped }, 'catching up: sending the newest event per room');
        }
      }
      while (!this.#closed) {
        const sent = await this.#sendOne(destination, d, state);
        if (sent === 'empty') return;
        if (sent === 'failed') return;
        state = undefined;
      }
    } catch (err) {
      this.#opts.log.warn({ err, destination }, 'federation queue failed');
    }
  }

  /** Sends one transaction; 'failed' leaves the destination in backoff. */
  async #sendOne(
    destination: string,
    d: Destination,
    state: DestinationState | undefined,
  ): Promise<'sent' | 'empty' | 'failed'> {
    const { db } = this.#opts.storage;
    const batch = await outboxBatch(db, destination, MAX_PDUS_PER_TXN, MAX_EDUS_PER_TXN);
    const ephemeral = d.ephemeral.splice(0, MAX_EDUS_PER_TXN - batch.edus.length);
    if (batch.pdus.length === 0 && batch.edus.length === 0 && ephemeral.length === 0) return 'empty';
    const events = await getEventRowsByNid(
      db,
      batch.pdus.map((r) => r.event_nid as number),
    );
    const byNid = new Map(events.map((e) => [Number(e.event_nid), e]));
    const pdus: unknown[] = [];
    for (const r of batch.pdus) {
      const ev = byNid.get(r.event_nid as number);
      // An event removed since (quarantine) is not sent; an unreadable one is reported and skipped.
      const pdu = ev === undefined ? undefined : parseObject(ev.json);
      if (pdu) pdus.push(pdu);
      else if (ev)
        this.#opts.damage?.report({
          kind: 'event_json_unparsable',
          eventId: ev.event_id,
          detail: `queued for ${destination} but its JSON does not parse; not sent`,
        });
    }
    const edus: Edu[] = [];
    for (const r of batch.edus) {
      const content = r.edu_content === null ? undefined : parseObject(r.edu_content);
      if (content && r.edu_type) edus.push({ edu_type: r.edu_type, content });
      else
        this.#opts.damage?.report({
          kind: 'outbox_row_unparsable',
          detail: `federation_outbox row ${r.id} (${r.edu_type ?? 'no type'}) for ${destination} is unreadable; not sent`,
        });
    }
    edus.push(...ephemeral);
    if (pdus.length === 0 && edus.length === 0) {
      // Every row was unreadable (and reported): nothing to send.
      await deleteOutboxRows(
        db,
        [...batch.pdus, ...batch.edus].map((r) => r.id),
      );
      return 'sent';
    }
    const txnId = `${this.#txnPrefix}-${++this.#txnCounter}`;
    const body = { origin: this.#opts.serverName, origin_server_ts: this.#now(), pdus, edus };
    try {
      const res = await this.#opts.client.put(
        destination,
        `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`,
        body,
      );
      this.#logRejected(destination, res.body);
    } catch (err) {
      await this.#failed(destination, d, state, err);
      return 'failed';
    }
    await deleteOutboxRows(
      db,
      [...batch.pdus, ...batch.edus].map((r) => r.id),
    );
    this.stats.transactions.set(destination, (this.stats.transactions.get(destination) ?? 0) + 1);
    this.stats.pdusSent += pdus.length;
    this.stats.edusSent += edus.length;
    const prev = state ?? (await getDestination(db, destination));
    if (!prev || prev.retryIntervalMs > 0 || prev.failureCount > 0 || prev.lastSuccessTs === null) {
      await putDestination(db, {
        destination,
        failureCount: 0,
        retryLastTs: 0,
        retryIntervalMs: 0,
        lastSuccessTs: this.#now(),
      });
    }
    d.backingOff = false;
    return 'sent';
  }

  async #failed(
    destination: string,
    d: Destination,
    state: DestinationState | undefined,
    err: unknown,
  ): Promise<void> {
    // A request cut by shutdown says nothing about the destination.
    if (this.#closed) return;
    const { db } = this.#opts.storage;
    const prev = state ?? (await getDestination(db, destination));
    const interval = nextRetryInterval(prev?.retryIntervalMs ?? 0, this.#backoff);
    await putDestination(db, {
      destination,
      failureCount: (prev?.failureCount ?? 0) + 1,
      retryLastTs: this.#now(),
      retryIntervalMs: interval,
      lastSuccessTs: prev?.lastSuccessTs ?? null,
    });
    this.stats.failures.set(destination, (this.stats.failures.get(destination) ?? 0) + 1);
    d.backingOff = true;
    d.ephemeral = [];
    this.#opts.log.info(
      { destination, retryInMs: interval, err: (err as Error).message },
      'federation transaction failed',
    );
    this.#schedule(destination, d, interval);
  }

  #schedule(destination: string, d: Destination, delayMs: number): void {
    if (this.#closed) return;
    if (d.timer) clearTimeout(d.timer);
    d.timer = setTimeout(() => {
      d.timer = undefined;
      this.wake(destination);
    }, delayMs);
    d.timer.unref();
  }

  #logRejected(destination: string, body: unknown): void {
    const results = (body as { pdus?: Record<string, { error?: unknown }> } | undefined)?.pdus;
    if (!results || typeof results !== 'object') return;
    for (const [eventId, r] of Object.entries(results)) {
      if (r && typeof r === 'object' && r.error !== undefined)
        this.#opts.log.info({ destination, eventId, error: r.error }, 'remote rejected an event');
    }
  }
}
