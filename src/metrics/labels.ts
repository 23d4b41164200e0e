/** Metric label helpers that do not need prom-client (so instrumentation code can use them without loading it). */

/** Well-known event types keep their name as a label; custom types are one bucket, so labels stay bounded. */
export function eventTypeLabel(type: string): string {
  return /^m\.[a-z0-9._]{1,60}$/.test(type) ? type : 'other';
}
