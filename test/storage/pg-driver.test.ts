/**
 * The PostgreSQL pool wrapper (src/storage/pg-driver.ts): once the schema is migrated, queries run as named
 * prepared statements, parsed once per connection, with the same results; transaction control stays unnamed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { openStorage, type Storage } from '../../src/storage/db.js';
import { ENGINES, freshDatabase, type TestDatabase } from '../helpers/engines.js';

if (ENGINES.includes('postgres')) {
  describe('postgres driver: named prepared statements', () => {
    let t: TestDatabase;
    let storage: Storage;
    before(async () => {
      t = await freshDatabase('postgres');
      storage = await openStorage(t.config);
    });
    after(async () => {
      await storage.close();
      await t.drop();
    });

    it('prepares a query text once per connection and reuses it', async () => {
      await storage.db.connection().execute(async (conn) => {
        const run = () =>
          conn.selectFrom('users').select('user_id').where('user_id', '=', '@nobody:test').execute();
        assert.deepEqual(await run(), []);
        assert.deepEqual(await run(), []);
        await conn.transaction().execute(async (trx) => {
          assert.deepEqual(
            await trx.selectFrom('users').select('user_id').where('user_id', '=', '@x:y').execute(),
            [],
          );
        });
        const prepared = await sql<{ statement: string; name: string }>`
          SELECT name, statement FROM pg_prepared_statements`.execute(conn);
        const users = prepared.rows.filter((r) => r.statement.includes('from "users"'));
        assert.equal(users.length, 1, JSON.stringify(prepared.rows));
        assert.match(users[0]?.name ?? '', /^hearth_\d+$/);
        assert.ok(
          prepared.rows.every((r) => !/^\s*(begin|commit|rollback)/i.test(r.statement)),
          'transaction control is not prepared',
        );
      });
    });
  });
}
