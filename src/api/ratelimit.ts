/** Token-bucket rate limiting, keyed by action and requester (IP or user id), as Synapse's ratelimiter. */
import { MatrixError } from './errors.js';

export interface RateLimitRule {
  per_second: number;
  burst_count: number;
}

interface Bucket {
  tokens: number;
  updated: number;
}

export class RateLimiter {
  #buckets = new Map<string, Bucket>();
  #maxEntries: number;

  constructor(
    readonly enabled: boolean,
    maxEntries = 100_000,
  ) {
    this.#maxEntries = maxEntries;
  }

  /** Takes one token for `key`; throws M_LIMIT_EXCEEDED with retry_after_ms when the bucket is empty. */
  check(key: string, rule: RateLimitRule, now = Date.now()): void {
    if (!this.enabled) return;
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      if (this.#buckets.size >= this.#maxEntries) this.#evict(now, rule);
      bucket = { tokens: rule.burst_count, updated: now };
      this.#buckets.set(key, bucket);
    }
    bucket.tokens = Math.min(
      rule.burst_count,
      bucket.tokens + ((now - bucket.updated) / 1000) * rule.per_second,
    );
    bucket.updated = now;
    if (bucket.tokens < 1) {
      const retryAfterMs = Math.ceil(((1 - bucket.tokens) / rule.per_second) * 1000);
      throw new MatrixError('M_LIMIT_EXCEEDED', 'Too many requests', { retry_after_ms: retryAfterMs });
    }
    bucket.tokens -= 1;
  }

  /**
   * Checks both the user's and the IP's bucket for `action`; server admins are exempt, and so are requests made with
   * the as_token of an application service registered with `rate_limited: false`.
   */
  checkRequester(
    action: string,
    rule: RateLimitRule,
    who: { userId: string; isAdmin: boolean; exemptFromRateLimits?: boolean },
    ip: string,
  ): void {
    if (!this.enabled || who.isAdmin || who.exemptFromRateLimits) return;
    this.check(`${action}:user:${who.userId}`, rule);
    this.check(`${action}:ip:${ip}`, rule);
  }

  #evict(now: number, rule: RateLimitRule): void {
    const full = (rule.burst_count / rule.per_second) * 1000;
    for (const [k, b] of this.#buckets) if (now - b.updated > full) this.#buckets.delete(k);
    if (this.#buckets.size >= this.#maxEntries) this.#buckets.clear();
  }
}
