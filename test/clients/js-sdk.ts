/**
 * matrix-js-sdk clients for Hearth users, for tests that check Hearth against a real client: creating and starting
 * a MatrixClient (without crypto), waiting for what its sync loop delivers, and stopping it without leaving timers.
 */
import * as sdk from 'matrix-js-sdk';
import { logger as sdkLogger, type Logger } from 'matrix-js-sdk/lib/logger.js';
import type { Listener } from 'matrix-js-sdk/lib/models/typed-event-emitter.js';
import type { IStore } from 'matrix-js-sdk/lib/store/index.js';

/** Anything that names a Hearth user: the `server.user(...)` clients of test/helpers/server.ts qualify. */
export interface HearthUser {
  baseUrl: string;
  userId: string;
  deviceId: string;
  token?: string;
}

export interface JsClientOptions {
  /** Passed to startClient; the test default is 20. */
  initialSyncLimit?: number;
  lazyLoadMembers?: boolean;
  /** `set_presence=offline` on /sync: the client does not mark its user online. */
  disablePresence?: boolean;
  /**
   * Long-poll timeout of /sync (default 30 s, the sdk's): longer than the waits, so an update that does not wake
   * the long-poll fails the test instead of arriving at the next poll. The server keeps holding a stopped
   * client's last long-poll until it times out or something for the user is written.
   */
  pollTimeout?: number;
  /** Time to wait for the PREPARED sync state. */
  readyTimeoutMs?: number;
  store?: IStore;
}

export const DEFAULT_WAIT_MS = 10_000;

const noop = (): void => undefined;

/** A Logger that drops everything (the sdk logs every sync at debug level). */
export const silentLogger: Logger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  getChild: () => silentLogger,
};

/** The loglevel logger behind the sdk's `logger` (its type is not exported). */
interface LoglevelLogger {
  methodFactory: (
    methodName: string,
    level: number,
    loggerName: string | symbol,
  ) => (...msg: unknown[]) => void;
  rebuild: () => void;
}

/** Debug lines of sdk modules that bound `logger.log` at import time, before any level could be set. */
const BOUND_SDK_DEBUG =
  /^(Event \S+ (already in|in neighbouring)|EventTimelineSet\.addLiveEvent|TimelineWindow)/;
let silenced = false;

/**
 * Silences the sdk's global loglevel logger (sync loop, stores, scheduler...). Its methods become no-ops, and so do
 * those of every child logger created later (children copy the parent's methodFactory: the MatrixRTC managers each
 * client creates). Two modules bound `logger.log` when imported; their lines reach console.debug and are dropped
 * there by message, leaving other console.debug output alone.
 */
export function silenceSdkLogs(): void {
  if (silenced) return;
  silenced = true;
  const root = sdkLogger as unknown as LoglevelLogger;
  root.methodFactory = () => noop;
  root.rebuild();
  const debug = console.debug.bind(console);
  console.debug = (...msg: unknown[]) => {
    if (typeof msg[0] === 'string' && BOUND_SDK_DEBUG.test(msg[0])) return;
    debug(...msg);
  };
}
silenceSdkLogs();

/**
 * A MemoryStore that hands its last sync token back as the "saved" one, so a stopped client that is started again
 * resumes with an incremental /sync from that token, as a client with a persistent store does after a restart.
 */
export class ResumableMemoryStore extends sdk.MemoryStore {
  override getSavedSyncToken(): Promise<string | null> {
    return Promise.resolve(this.getSyncToken());
  }
}

const started = new Set<sdk.MatrixClient>();

/** A MatrixClient for the user's existing device and access token (not started). */
export function createJsClient(user: HearthUser, store?: IStore): sdk.MatrixClient {
  if (!user.token) throw new Error(`${user.userId} has no access token`);
  const client = sdk.createClient({
    baseUrl: user.baseUrl,
    accessToken: user.token,
    userId: user.userId,
    deviceId: user.deviceId,
    fetchFn: globalThis.fetch,
    logger: silentLogger,
    timelineSupport: true,
    store: store ?? new sdk.MemoryStore(),
  });
  unrefLocalTimeouts(client.http);
  return client;
}

type RequestOtherUrl = sdk.MatrixClient['http']['requestOtherUrl'];

/**
 * The sdk enforces `localTimeoutMs` (pollTimeout + 80 s on every /sync) with a plain setTimeout that is never
 * cleared, so each long-poll would keep the test process alive for ~85 s after the client stopped. Hand the same
 * deadline to fetch as an AbortSignal.timeout instead, whose timer is unref'd.
 */
function unrefLocalTimeouts(http: sdk.MatrixClient['http']): void {
  const original: RequestOtherUrl = http.requestOtherUrl.bind(http);
  const patched = ((method, url, body, opts) => {
    if (opts?.localTimeoutMs === undefined) return original(method, url, body, opts);
    const { localTimeoutMs, ...rest } = opts;
    const deadline = AbortSignal.timeout(localTimeoutMs);
    const abortSignal = rest.abortSignal ? AbortSignal.any([rest.abortSignal, deadline]) : deadline;
    return original(method, url, body, { ...rest, abortSignal });
  }) as RequestOtherUrl;
  http.requestOtherUrl = patched;
}

/** Starts (or restarts) a client's sync loop and resolves once it reaches PREPARED. */
export async function startJsClient(client: sdk.MatrixClient, opts: JsClientOptions = {}): Promise<void> {
  const prepared = waitForEvent(
    client,
    sdk.ClientEvent.Sync,
    (state) => state === sdk.SyncState.Prepared,
    opts.readyTimeoutMs ?? 20_000,
    `${client.getUserId() ?? '?'} to reach the PREPARED sync state`,
  );
  started.add(client);
  await client.startClient({
    initialSyncLimit: opts.initialSyncLimit ?? 20,
    lazyLoadMembers: opts.lazyLoadMembers ?? false,
    disablePresence: opts.disablePresence ?? false,
    pollTimeout: opts.pollTimeout ?? 30_000,
  });
  await prepared;
}

/** Creates and starts a client for the user. */
export async function jsClient(user: HearthUser, opts: JsClientOptions = {}): Promise<sdk.MatrixClient> {
  const client = createJsClient(user, opts.store);
  await startJsClient(client, opts);
  return client;
}

/** Stops a client's sync loop and its timers; it may be started again. */
export function stopJsClient(client: sdk.MatrixClient): void {
  client.stopClient();
  started.delete(client);
}

/** Stops every client started through this module (for `after` hooks), forgetting their listeners. */
export function stopAllJsClients(): void {
  for (const c of [...started]) {
    stopJsClient(c);
    c.removeAllListeners();
  }
}

/** Rejects after `ms` with a message naming what was awaited; the timer never outlives the promise. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

type HandlerArgs<E extends sdk.EmittedEvents> = Parameters<sdk.ClientEventHandlerMap[E]>;
type ClientListener<E extends sdk.EmittedEvents> = Listener<sdk.EmittedEvents, sdk.ClientEventHandlerMap, E>;

/**
 * Resolves with the arguments of the first `event` the client emits for which `predicate` holds. Register it
 * before the action that causes the event; for conditions on the client's state use {@link waitUntil}.
 */
export function waitForEvent<E extends sdk.EmittedEvents>(
  client: sdk.MatrixClient,
  event: E,
  predicate: (...args: HandlerArgs<E>) => boolean,
  timeoutMs = DEFAULT_WAIT_MS,
  what = `${event} on ${client.getUserId() ?? '?'}`,
): Promise<HandlerArgs<E>> {
  let listener: ((...args: HandlerArgs<E>) => void) | undefined;
  const seen = new Promise<HandlerArgs<E>>((resolve, reject) => {
    listener = (...args: HandlerArgs<E>) => {
      try {
        if (predicate(...args)) resolve(args);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    };
    client.on(event, listener as unknown as ClientListener<E>);
  });
  return withTimeout(seen, timeoutMs, what).finally(() =>
    client.off(event, listener as unknown as ClientListener<E>),
  );
}

/** Every client event after which a sync-delivered condition may have become true. */
const RECHECK_ON: readonly sdk.EmittedEvents[] = [
  sdk.ClientEvent.Sync,
  sdk.ClientEvent.Room,
  sdk.ClientEvent.AccountData,
  sdk.RoomEvent.Timeline,
  sdk.RoomEvent.Receipt,
  sdk.RoomEvent.AccountData,
  sdk.RoomEvent.Tags,
  sdk.RoomEvent.Name,
  sdk.RoomEvent.MyMembership,
  sdk.RoomStateEvent.Events,
  sdk.RoomMemberEvent.Typing,
  sdk.RoomMemberEvent.Membership,
  sdk.UserEvent.Presence,
];

/**
 * Resolves with the first truthy value of `check`, evaluated now and after every sync and every room, member,
 * receipt, account data or presence event of the client. On timeout the error names `what` and the last value.
 */
export function waitUntil<T>(
  client: sdk.MatrixClient,
  what: string,
  check: () => T | undefined | null | false,
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<T> {
  let last: unknown;
  let listener: (() => void) | undefined;
  const reached = new Promise<T>((resolve, reject) => {
    listener = () => {
      try {
        const v = check();
        last = v;
        if (v) resolve(v);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    };
    for (const e of RECHECK_ON) client.on(e, listener);
    listener();
  });
  return withTimeout(reached, timeoutMs, `${client.getUserId() ?? '?'}: ${what}`)
    .catch((err: Error) => {
      throw new Error(`${err.message} (last check returned ${JSON.stringify(last)})`);
    })
    .finally(() => {
      if (listener) for (const e of RECHECK_ON) client.off(e, listener);
    });
}

/** The client's room once it knows it (with the given own membership, when given). */
export function waitForRoom(
  client: sdk.MatrixClient,
  roomId: string,
  membership?: string,
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<sdk.Room> {
  return waitUntil(
    client,
    `room ${roomId}${membership ? ` with membership ${membership}` : ''}`,
    () => {
      const room = client.getRoom(roomId);
      if (!room) return undefined;
      return membership === undefined || room.getMyMembership() === membership ? room : undefined;
    },
    timeoutMs,
  );
}

/** Bodies of the m.room.message events of a timeline. */
export function messageBodies(events: readonly sdk.MatrixEvent[]): string[] {
  return events
    .filter((e) => e.getType() === sdk.EventType.RoomMessage)
    .map((e) => (e.getContent() as { body?: unknown }).body)
    .filter((b): b is string => typeof b === 'string');
}

/** The events of a room's live timeline and every timeline linked before it, oldest first. */
export function linkedTimelineEvents(room: sdk.Room): sdk.MatrixEvent[] {
  const chain: sdk.EventTimeline[] = [];
  let t: sdk.EventTimeline | null = room.getLiveTimeline();
  while (t && !chain.includes(t)) {
    chain.unshift(t);
    t = t.getNeighbouringTimeline(sdk.EventTimeline.BACKWARDS);
  }
  return chain.flatMap((tl) => tl.getEvents());
}
