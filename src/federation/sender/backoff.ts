/**
 * Retry intervals of a destination that failed, as Synapse's retry limiter grows them: the first failure waits
 * `minMs`, each further failure multiplies the wait by `multiplier` with jitter (x0.8 to x1.4), capped at `maxMs`.
 * A success resets the destination; a request from the destination wakes it at once (it is evidently back).
 */
export interface BackoffPolicy {
  minMs: number;
  multiplier: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = {
  minMs: 5_000,
  multiplier: 2,
  maxMs: 24 * 60 * 60 * 1000,
};

/** The wait after a failure, given the previous wait (0 when the destination was healthy). */
export function nextRetryInterval(
  previousMs: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  if (previousMs <= 0) return policy.minMs;
  const jitter = 0.8 + random() * 0.6;
  return Math.min(policy.maxMs, Math.round(previousMs * policy.multiplier * jitter));
}
