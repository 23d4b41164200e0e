/**
 * Database errors that mean "the database cannot serve this now" rather than a bug: PostgreSQL down or restarting,
 * a connection lost or timed out, a read-only or full SQLite file. The HTTP layer answers them with 503 M_UNKNOWN
 * and a clear message instead of a bare 500.
 */

const PG_UNAVAILABLE = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '53300', // too_many_connections
  '57014', // query_canceled (statement timeout)
]);
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH']);
const PG_MESSAGES = [
  /Connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /Client has encountered a connection error/i,
  /Connection ended unexpectedly/i,
  /connection timeout/i,
];

/** A message for the client when `err` means the database is unavailable, else undefined. */
export function databaseUnavailable(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : '';
  if (code.startsWith('SQLITE_READONLY'))
    return 'The database is read-only: writes are refused until it is writable again';
  if (code === 'SQLITE_FULL') return 'The database disk is full: writes are refused until space is freed';
  if (code.startsWith('SQLITE_IOERR')) return 'The database could not be written (I/O error)';
  if (code === 'SQLITE_CANTOPEN') return 'The database file cannot be opened';
  if (code === 'SQLITE_BUSY') return 'The database is busy; try again';
  if (PG_UNAVAILABLE.has(code) || NET_CODES.has(code) || PG_MESSAGES.some((r) => r.test(message))) {
    return 'The database is unavailable; try again shortly';
  }
  return undefined;
}
