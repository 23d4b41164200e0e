/**
 * Pagination and sync tokens are opaque strings to clients. Both start with `s<position>`, a position in the
 * global stream (src/util/stream.ts); sync tokens may carry more `_`-separated parts for in-memory streams.
 *
 * For room pagination a token sits between events: `s<pos>` means "after every event with stream_ordering <= pos".
 * Paginating backwards from it returns events with stream_ordering <= pos, newest first; forwards, events with
 * stream_ordering > pos, oldest first. Backfilled history has negative positions (storage/backfill.ts), so a room
 * pagination token may be negative: `s-42`.
 */
import { MatrixError } from '../api/errors.js';

/** A position below every event, backfilled ones included: the start of any room's timeline. */
export const TIMELINE_START = -999_999_999_999_999;

export function formatStreamToken(pos: number, extra: readonly number[] = []): string {
  return ['s' + String(pos), ...extra.map(String)].join('_');
}

/** Parses `s<pos>[_<n>...]` (`pos` may be negative); anything else is 400 M_INVALID_PARAM naming the parameter. */
export function parseStreamToken(token: string, param: string): { pos: number; extra: number[] } {
  const m = /^s(-?\d{1,15})((?:_\d{1,15})*)$/.exec(token);
  if (!m) throw new MatrixError('M_INVALID_PARAM', `Invalid ${param} token`);
  const pos = Number(m[1]);
  const extra = (m[2] ?? '')
    .split('_')
    .filter((x) => x !== '')
    .map(Number);
  return { pos, extra };
}
