/** Other servers' verify keys and the key responses kept for notary answers (tables of migration 0012). */
import type { Kysely, Transaction } from 'kysely';
import type { Database, ServerKeyResponsesTable, ServerVerifyKeysTable } from './schema.js';

type Executor = Kysely<Database> | Transaction<Database>;

export type StoredVerifyKey = ServerVerifyKeysTable;
export type StoredKeyResponse = ServerKeyResponsesTable;

export async function getVerifyKey(
  db: Executor,
  serverName: string,
  keyId: string,
): Promise<StoredVerifyKey | undefined> {
  return db
    .selectFrom('server_verify_keys')
    .selectAll()
    .where('server_name', '=', serverName)
    .where('key_id', '=', keyId)
    .executeTakeFirst();
}

export async function listVerifyKeys(db: Executor, serverName: string): Promise<StoredVerifyKey[]> {
  return db
    .selectFrom('server_verify_keys')
    .selectAll()
    .where('server_name', '=', serverName)
    .orderBy('key_id')
    .execute();
}

/**
 * Records keys learnt from one key response. A key listed as old (expired_ts) stays old whatever a later or staler
 * answer says; a current key's validity only grows. A key id never changes its key: a different key under a known id
 * is ignored (the spec forbids reusing ids).
 */
export async function storeVerifyKeys(db: Kysely<Database>, keys: StoredVerifyKey[]): Promise<void> {
  if (!keys.length) return;
  await db.transaction().execute(async (trx) => {
    for (const k of keys) {
      const old = await getVerifyKey(trx, k.server_name, k.key_id);
      if (!old) {
        await trx.insertInto('server_verify_keys').values(k).execute();
        continue;
      }
      if (old.verify_key !== k.verify_key) continue;
      let next: Pick<StoredVerifyKey, 'valid_until_ts' | 'expired_ts'>;
      if (k.expired_ts !== null)
        next = {
          expired_ts: old.expired_ts === null ? k.expired_ts : Math.min(old.expired_ts, k.expired_ts),
          valid_until_ts: old.expired_ts === null ? k.expired_ts : Math.min(old.expired_ts, k.expired_ts),
        };
      else if (old.expired_ts !== null) continue;
      else next = { expired_ts: null, valid_until_ts: Math.max(old.valid_until_ts, k.valid_until_ts) };
      await trx
        .updateTable('server_verify_keys')
        .set({ ...next, from_server: k.from_server, fetched_ts: k.fetched_ts })
        .where('server_name', '=', k.server_name)
        .where('key_id', '=', k.key_id)
        .execute();
    }
  });
}

export async function getKeyResponse(
  db: Executor,
  serverName: string,
): Promise<StoredKeyResponse | undefined> {
  return db
    .selectFrom('server_key_responses')
    .selectAll()
    .where('server_name', '=', serverName)
    .executeTakeFirst();
}

/** Keeps the answer unless a stored one is valid for longer (an older answer never replaces a newer one). */
export async function storeKeyResponse(db: Executor, row: StoredKeyResponse): Promise<void> {
  await db
    .insertInto('server_key_responses')
    .values(row)
    .onConflict((oc) =>
      oc
        .column('server_name')
        .doUpdateSet((eb) => ({
          json: eb.ref('excluded.json'),
          valid_until_ts: eb.ref('excluded.valid_until_ts'),
          fetched_ts: eb.ref('excluded.fetched_ts'),
        }))
        .where('server_key_responses.valid_until_ts', '<=', row.valid_until_ts),
    )
    .execute();
}
