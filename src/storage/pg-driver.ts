/**
 * The pool Kysely's PostgreSQL dialect draws from, seen through a thin wrapper:
 * - the in-memory caches hear of the writes they watch (write-watch.ts): when such a statement runs, and again when
 *   the transaction it ran in ends (only then do the other connections see it), the generation of its kind moves;
 * - once the schema is migrated (`nameStatements`), queries are sent as named prepared statements, so each
 *   connection parses (and, after a few runs, plans) a query text once instead of at every execution. The first
 *   NAMED_STATEMENTS distinct texts get a name; later ones run unnamed, as before.
 */
import type { PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';
import type PgModule from 'pg';
import { noteWrite, watchedWrite, type WatchKind } from './write-watch.js';

/** Distinct query texts given a name (each connection keeps at most this many prepared statements). */
export const NAMED_STATEMENTS = 500;
const names = new Map<string, string>();

/** The statement name of `text`, or undefined to run it unnamed. */
function nameOf(text: string): string | undefined {
  const known = names.get(text);
  if (known !== undefined) return known;
  if (names.size >= NAMED_STATEMENTS || text.length > 8000) return undefined;
  // Only plannable statements: transaction control and DDL stay unnamed.
  if (!/^\s*(select|insert|update|delete|with)\b/i.test(text)) return undefined;
  const name = `hearth_${names.size + 1}`;
  names.set(text, name);
  return name;
}

export interface WatchedPool extends PostgresPool {
  /** Send queries as named prepared statements (set once migrations have run). */
  nameStatements: boolean;
}

function wrapClient(client: PgModule.PoolClient, pool: WatchedPool): PostgresPoolClient {
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
      const name = pool.nameStatements ? nameOf(text) : undefined;
      const values = [...parameters];
      const result = name ? await client.query({ name, text, values }) : await client.query(text, values);
      return result as unknown as PostgresQueryResult<R>;
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
export function watchedPool(pool: PgModule.Pool): WatchedPool {
  const watched: WatchedPool = {
    nameStatements: false,
    connect: async () => wrapClient(await pool.connect(), watched),
    end: () => pool.end(),
  };
  return watched;
}
