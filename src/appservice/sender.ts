/**
 * Homeserver → application service transactions (`PUT /_matrix/app/v1/transactions/{txnId}`), one queue per service
 * with a url, derived from the global stream like the federation fan-out: nothing is written on the event path.
 *
 * Per service `appservice_state` holds the stream position delivered through. A pass builds the next transaction
 * from the range after it (transaction.ts), stores it (id, range, body) in `appservice_txns` together with the new
 * transaction counter, then sends it; on a 2xx the row goes and the position moves to the range's end in one
 * transaction. A failure (an error status, a timeout, no connection) keeps the row and retries it later with the SAME
 * id and body, with exponential backoff (Synapse's recoverer: 2^n seconds, here from `backoff.minMs` up to
 * `backoff.maxMs`); a crash or SIGKILL at any point resends the stored transaction at the next start. Every event a
 * service is interested in is thus delivered in stream order, exactly once per transaction id (a service dedupes a
 * retried id, as the spec asks). A range that holds nothing for the service moves the position in memory, persisted
 * every few seconds (replaying it after a crash finds nothing again).
 *
 * Typing is in memory (worthless after a restart, as Synapse treats it): a change marks the room, and the next
 * transaction of each service with `receive_ephemeral` interested in the room carries the room's current m.typing.
 */
import type { Logger } from 'pino';
import type { JsonObject } from '../rooms/event.js';
import type { EventReader } from '../read/event-reader.js';
import {
  advanceAppservicePosition,
  completeTxn,
  getPendingTxn,
  initAppserviceState,
  savePendingTxn,
  type PendingTxn,
} from '../storage/appservice.js';
import type { Storage } from '../storage/db.js';
import type { TypingStore } from '../sync/typing.js';
import { appServiceRequest, type AppServiceRequest, type AppServiceResponse } from './http.js';
import { RoomInterest } from './interest.js';
import type { AppService, AppServiceRegistry } from './registration.js';
import { buildTransaction, toDeviceRecipients, type ServiceView } from './transaction.js';

export interface AppServiceBackoff {
  minMs: number;
  maxMs: number;
}

export const DEFAULT_AS_BACKOFF: AppServiceBackoff = { minMs: 1_000, maxMs: 5 * 60 * 1000 };
const PERSIST_EVERY_POSITIONS = 1000;
const PERSIST_EVERY_MS = 5000;
const TXN_TIMEOUT_MS = 60_000;

export interface AppServiceSenderOptions {
  storage: Storage;
  reader: EventReader;
  registry: AppServiceRegistry;
  serverName: string;
  presenceEnabled: boolean;
  log: Logger;
  typing?: TypingStore | undefined;
  backoff?: AppServiceBackoff | undefined;
  /** Replaces the HTTP request (tests). */
  request?: (as: AppService, req: AppServiceRequest) => Promise<AppServiceResponse>;
}

interface Queue {
  as: AppService;
  view: ServiceView;
  running: Promise<void> | undefined;
  again: boolean;
  timer: NodeJS.Timeout | undefined;
  /** Delivered through (in memory; the stored one may lag while ranges held nothing). */
  position: number;
  persisted: number;
  persistedAt: number;
  retryMs: number;
  /** Rooms whose typing changed since the last transaction. */
  typingRooms: Set<string>;
}

export interface AppServiceStats {
  transactions: Map<string, number>;
  failures: Map<string, number>;
  events: Map<string, number>;
}

const add = (m: Map<string, number>, k: string, n = 1): void => {
  m.set(k, (m.get(k) ?? 0) + n);
};

export class AppServiceSender {
  readonly stats: AppServiceStats = { transactions: new Map(), failures: new Map(), events: new Map() };
  readonly #opts: AppServiceSenderOptions;
  readonly #backoff: AppServiceBackoff;
  readonly #queues = new Map<string, Queue>();
  #unsubscribe: (() => void)[] = [];
  #closed = false;

  constructor(opts: AppServiceSenderOptions) {
    this.#opts = opts;
    this.#backoff = opts.backoff ?? DEFAULT_AS_BACKOFF;
  }

  /** Reads each service's position (a new service starts at the current head) and sends what is waiting. */
  async start(): Promise<void> {
    const { db, stream } = this.#opts.storage;
    const { registry } = this.#opts;
    for (const as of registry.all()) {
      if (as.url === null) continue;
      const state = await initAppserviceState(db, as.id, stream.current);
      this.#queues.set(as.id, {
        as,
        view: {
          id: as.id,
          matcher: {
            user: (u) => registry.isInterestedInUser(as, u),
            alias: (a) => registry.isInterestedInAlias(as, a),
            room: (r) => registry.isInterestedInRoom(as, r),
          },
          ephemeral: as.receiveEphemeral,
          msc3202: as.msc3202,
        },
        running: undefined,
        again: false,
        timer: undefined,
        position: state.streamPos,
        persisted: state.streamPos,
        persistedAt: Date.now(),
        retryMs: 0,
        typingRooms: new Set(),
      });
    }
    if (this.#queues.size === 0) return;
    this.#unsubscribe.push(stream.onAdvance(() => this.pokeAll()));
    const typing = this.#opts.typing;
    if (typing && [...this.#queues.values()].some((q) => q.view.ephemeral))
      this.#unsubscribe.push(typing.subscribe((roomId) => this.#typingChanged(roomId)));
    this.pokeAll();
  }

  pokeAll(): void {
    for (const id of this.#queues.keys()) this.poke(id);
  }

  /** Runs a pass for the service unless it is in backoff (or another pass after the running one). */
  poke(asId: string): void {
    const q = this.#queues.get(asId);
    if (!q || this.#closed || q.timer) return;
    if (q.running) {
      q.again = true;
      return;
    }
    q.running = this.#run(q).finally(() => {
      q.running = undefined;
      if (q.again && !this.#closed) {
        q.again = false;
        this.poke(asId);
      }
    });
  }

  /** Ends the backoff of a service (or of all) and sends now: it is evidently back (tests, a ping). */
  retryNow(asId?: string): void {
    for (const q of this.#queues.values()) {
      if (asId !== undefined && q.as.id !== asId) continue;
      if (q.timer) clearTimeout(q.timer);
      q.timer = undefined;
      this.poke(q.as.id);
    }
  }

  /** Stream positions each service is behind the head (metrics). */
  queueDepths(): Map<string, number> {
    const head = this.#opts.storage.stream.current;
    return new Map([...this.#queues.values()].map((q) => [q.as.id, Math.max(0, head - q.position)]));
  }

  /** Services in retry backoff now. */
  get backingOff(): number {
    let n = 0;
    for (const q of this.#queues.values()) if (q.timer) n++;
    return n;
  }

  /** Resolves when no pass is running (tests, shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#queues.values()].map((q) => q.running).filter((p) => p !== undefined);
      if (running.length === 0) return;
      await Promise.allSettled(running);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe = [];
    for (const q of this.#queues.values()) if (q.timer) clearTimeout(q.timer);
    await this.idle();
    for (const q of this.#queues.values())
      await this.#persist(q).catch((err: unknown) =>
        this.#opts.log.warn({ err, appservice: q.as.id }, 'appservice position not saved at shutdown'),
      );
  }

  #typingChanged(roomId: string): void {
    for (const q of this.#queues.values()) {
      if (!q.view.ephemeral) continue;
      q.typingRooms.add(roomId);
      this.poke(q.as.id);
    }
  }

  async #typingEvents(q: Queue): Promise<JsonObject[]> {
    const typing = this.#opts.typing;
    if (!typing || q.typingRooms.size === 0) return [];
    const rooms = new RoomInterest(this.#opts.storage.db);
    const out: JsonObject[] = [];
    for (const roomId of q.typingRooms) {
      if (await rooms.interestingById(q.view.matcher, roomId))
        out.push({ type: 'm.typing', room_id: roomId, content: { user_ids: typing.typingIn(roomId) } });
    }
    q.typingRooms.clear();
    return out;
  }

  async #run(q: Queue): Promise<void> {
    try {
      while (!this.#closed) {
        const txn = await this.#next(q);
        if (!txn) return;
        if (!(await this.#send(q, txn))) return;
      }
    } catch (err) {
      // The next stream advance (or the retry timer) tries again from the stored state.
      this.#opts.log.warn({ err, appservice: q.as.id }, 'appservice queue failed');
      this.#schedule(q);
    }
  }

  /** The stored unacknowledged transaction, else the next one built and stored; undefined when caught up. */
  async #next(q: Queue): Promise<PendingTxn | undefined> {
    const { db, stream } = this.#opts.storage;
    const pending = await getPendingTxn(db, q.as.id);
    if (pending) return pending;
    for (;;) {
      const head = stream.current;
      if (q.position >= head && q.typingRooms.size === 0) {
        await this.#maybePersist(q);
        return undefined;
      }
      const typing = await this.#typingEvents(q);
      const from = q.position;
      const built = await buildTransaction(
        {
          storage: this.#opts.storage,
          reader: this.#opts.reader,
          serverName: this.#opts.serverName,
          presenceEnabled: this.#opts.presenceEnabled,
        },
        q.view,
        from,
        Math.max(head, from),
        typing,
      );
      if (!built.body) {
        q.position = Math.max(q.position, built.toPos);
        await this.#maybePersist(q);
        continue;
      }
      const body = JSON.stringify(built.body);
      const txnId = await db
        .transaction()
        .execute((trx) =>
          savePendingTxn(trx, { asId: q.as.id, fromPos: from, toPos: built.toPos, body }, Date.now()),
        );
      return { asId: q.as.id, txnId, fromPos: from, toPos: built.toPos, body };
    }
  }

  /** Sends a stored transaction; true when acknowledged. */
  async #send(q: Queue, txn: PendingTxn): Promise<boolean> {
    let body: JsonObject;
    try {
      body = JSON.parse(txn.body) as JsonObject;
    } catch {
      // Cannot happen short of damage: the range is built again (same positions, a new id).
      this.#opts.reader.damage.report({
        kind: 'outbox_row_unparsable',
        detail: `appservice_txns ${txn.asId}/${txn.txnId} has an unreadable body; rebuilt`,
      });
      await this.#opts.storage.db.deleteFrom('appservice_txns').where('as_id', '=', txn.asId).execute();
      return true;
    }
    const request = this.#opts.request ?? appServiceRequest;
    let status = 0;
    let why: string;
    try {
      const res = await request(q.as, {
        method: 'PUT',
        path: `/_matrix/app/v1/transactions/${encodeURIComponent(String(txn.txnId))}`,
        body,
        timeoutMs: TXN_TIMEOUT_MS,
      });
      status = res.status;
      why = `status ${status}`;
    } catch (err) {
      why = (err as Error).message;
    }
    if (this.#closed && (status < 200 || status >= 300)) return false;
    if (status < 200 || status >= 300) {
      add(this.stats.failures, q.as.id);
      q.retryMs = q.retryMs === 0 ? this.#backoff.minMs : Math.min(this.#backoff.maxMs, q.retryMs * 2);
      this.#opts.log.info(
        { appservice: q.as.id, txnId: txn.txnId, retryInMs: q.retryMs, why },
        'appservice transaction failed',
      );
      this.#schedule(q);
      return false;
    }
    await this.#opts.storage.db
      .transaction()
      .execute((trx) => completeTxn(trx, txn, toDeviceRecipients(body)));
    q.position = Math.max(q.position, txn.toPos);
    q.persisted = q.position;
    q.persistedAt = Date.now();
    q.retryMs = 0;
    add(this.stats.transactions, q.as.id);
    add(this.stats.events, q.as.id, Array.isArray(body.events) ? body.events.length : 0);
    return true;
  }

  #schedule(q: Queue): void {
    if (this.#closed) return;
    if (q.timer) clearTimeout(q.timer);
    const delay = q.retryMs || this.#backoff.minMs;
    q.timer = setTimeout(() => {
      q.timer = undefined;
      this.poke(q.as.id);
    }, delay);
    q.timer.unref();
  }

  async #maybePersist(q: Queue): Promise<void> {
    if (
      q.position - q.persisted >= PERSIST_EVERY_POSITIONS ||
      (q.position !== q.persisted && Date.now() - q.persistedAt >= PERSIST_EVERY_MS)
    )
      await this.#persist(q);
  }

  async #persist(q: Queue): Promise<void> {
    if (q.position === q.persisted) return;
    await advanceAppservicePosition(this.#opts.storage.db, q.as.id, q.position);
    q.persisted = q.position;
    q.persistedAt = Date.now();
  }
}
