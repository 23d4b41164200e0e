/**
 * What the long-poll wake benches (sync-latency, sync-fanout, sliding-sync-wake) share: clock helpers, a GET that
 * notes when its response fully arrived, receivers that record when each event of their room arrived, waiting for one
 * message's arrival at every receiver, and waiting until every long-poll is parked in the server's notifier.
 */
import http from 'node:http';
import type { Json } from './lib.js';

export const now = (): bigint => process.hrtime.bigint();
export const msSince = (a: bigint, b: bigint): number => Number(b - a) / 1e6;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function getJson(
  agent: http.Agent,
  url: string,
  token: string,
): Promise<{ body: Json; arrived: bigint }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const arrived = now();
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200)
          reject(new Error(`GET ${url}: HTTP ${res.statusCode} ${text.slice(0, 300)}`));
        else resolve({ body: JSON.parse(text) as Json, arrived });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** A long-polling receiver's arrival bookkeeping. */
export interface Waiting {
  /** True while a poll issued after the previous response is outstanding. */
  parked: boolean;
  /** Arrival time of each event of its room seen in a response (a response can beat the sender's 2xx). */
  seen: Map<string, bigint>;
  /** The event this receiver waits for, and what to call when a response carries it. */
  expect?: { eventId: string; done: (arrived: bigint) => void };
}

/** Records the events a response carried and settles the receiver's wait when it was one of them. */
export function sawEvents(r: Waiting, eventIds: Iterable<string>, arrived: bigint): void {
  for (const id of eventIds) r.seen.set(id, arrived);
  const ex = r.expect;
  const at = ex && r.seen.get(ex.eventId);
  if (ex && at !== undefined) {
    r.expect = undefined;
    ex.done(at);
  }
}

/** When `eventId` arrived at each target; rejects with `what` when not all have it within `ms`. */
export async function arrivalsOf(
  targets: readonly Waiting[],
  eventId: string,
  what: string,
  ms: number,
): Promise<bigint[]> {
  const arrivals = targets.map(
    (r) =>
      new Promise<bigint>((resolve) => {
        const seen = r.seen.get(eventId);
        if (seen !== undefined) resolve(seen);
        else r.expect = { eventId, done: resolve };
      }),
  );
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    Promise.all(arrivals),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(what)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Whether every receiver's poll is parked: each re-issued, and none (re)issued in the last `settleMs`. */
export class Parking {
  #lastIssue = now();
  #failure: Error | undefined;

  constructor(
    private readonly receivers: readonly Waiting[],
    private readonly settleMs: number,
    private readonly pollMs = 20,
  ) {}

  /** A poll was (re)issued now. */
  issued(): void {
    this.#lastIssue = now();
  }

  /** A poll loop failed: the next wait throws it. */
  fail(err: unknown): void {
    this.#failure ??= err as Error;
  }

  async all(): Promise<void> {
    for (;;) {
      if (this.#failure) throw this.#failure;
      if (this.receivers.every((r) => r.parked) && msSince(this.#lastIssue, now()) >= this.settleMs) return;
      await sleep(this.pollMs);
    }
  }
}
