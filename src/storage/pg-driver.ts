/**
 * The pool Kysely's PostgreSQL dialect draws from, seen through a thin wrapper so the in-memory caches hear of the
 * writes they watch (write-watch.ts): when such a statement runs, and again when the transaction it ran in ends
 * (only then do the other connections see it), the generation of its kind moves.
 */
import type { PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';
import type PgModule from 'pg';
import { noteWrite, watchedWrite, type WatchKind } from './write-watch.js';

function wrapClient(client: PgModule.PoolClient): PostgresPoolClient {
  /** Watched writes this connection ran that other connections may not see yet. */
  const pending = new Set<WatchKind>();
  let inTransaction = false;
  const query = async <R>(text: string, parameters: readonly unknown[]): Promise<PostgresQueryResult<R>> => {
    const watched = watchedWrite(text);
    if (watched) {
      noteWrite(watched);
      pending.add(watched);
    } else if (/^\s*(begin|start\s+transaction)\b/i.test(text)) {
      inTransaction = true;
    } else if (/^\s*(commit|rollback|end)\b/i.test(text)) {
      inTransaction = false;
    }
    try {
      return (await client.query(text, [...parameters])) as unknown as PostgresQueryResult<R>;
    } finally {
      // Autocommitted, or the end of the transaction it ran in: now every connection sees it.
      if (pending.size > 0 && !inTransaction) {
        for (const kind of pending) noteWrite(kind);
        pending.clear();
      }
    }
  };
  return {
    query: query as PostgresPoolClient['query'],
    release: (destroy?: boolean) => {
      for (const kind of pending) noteWrite(kind);
      pending.clear();
      client.release(destroy);
    },
  };
}

/** `pool` as Kysely's PostgresDialect wants it, each client wrapped (see above). */
export function watchedPool(pool: PgModule.Pool): PostgresPool {
  return {
    connect: async () => wrapClient(await pool.connect()),
    end: () => pool.end(),
  };
}
