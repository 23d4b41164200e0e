import assert from 'node:assert/strict';
import { after, afterEach, describe, it } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { openKysely, openStorage, type Storage } from '../../src/storage/db.js';
import { currentSchemaVersion, migrate, SchemaTooNewError } from '../../src/storage/migrate.js';
import { MIGRATIONS } from '../../src/storage/migrations/index.js';
import type { Migration } from '../../src/storage/migrations/types.js';
import type { Database } from '../../src/storage/schema.js';
import { ENGINES, freshDatabase, type TestDatabase } from '../helpers/engines.js';

const LATEST = MIGRATIONS.at(-1)?.version ?? 0;

async function tableExists(db: Kysely<Database>, name: string): Promise<boolean> {
  const tables = await db.introspection.getTables();
  return tables.some((t) => t.name === name);
}

for (const engine of ENGINES) {
  describe(`${engine}: migrations`, () => {
    const dbs: TestDatabase[] = [];
    const open: Kysely<Database>[] = [];
    const fresh = async () => {
      const t = await freshDatabase(engine);
      dbs.push(t);
      return t;
    };
    const kysely = (t: TestDatabase) => {
      const db = openKysely(t.config);
      open.push(db);
      return db;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((db) => db.destroy()));
    });
    after(async () => {
      for (const t of dbs) await t.drop();
    });

    it('lists the migrations in increasing version order', () => {
      const versions = MIGRATIONS.map((m) => m.version);
      assert.equal(versions[0], 1);
      for (let i = 1; i < versions.length; i++)
        assert.ok((versions[i] as number) > (versions[i - 1] as number), `${versions.join(', ')}`);
    });

    it('applies every migration to an empty database and records them', async () => {
      const db = kysely(await fresh());
      const applied = await migrate(db, engine);
      assert.deepEqual(
        applied,
        MIGRATIONS.map((m) => m.version),
      );
      const rows = await db.selectFrom('schema_version').selectAll().orderBy('version').execute();
      assert.deepEqual(
        rows.map((r) => [Number(r.version), r.name]),
        MIGRATIONS.map((m) => [m.version, m.name]),
      );
      for (const r of rows) assert.ok(Number(r.applied_ts) > Date.now() - 60_000);
      assert.equal(await currentSchemaVersion(db), LATEST);
      for (const table of ['users', 'devices', 'access_tokens', 'refresh_tokens', 'uia_sessions'])
        assert.ok(await tableExists(db, table), table);

      assert.deepEqual(await migrate(db, engine), [], 'a second run applies nothing');
      const count = await db
        .selectFrom('schema_version')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow();
      assert.equal(Number(count.n), MIGRATIONS.length);
    });

    it('applies only the pending migrations, and rolls back a failing one', async () => {
      const db = kysely(await fresh());
      await migrate(db, engine);
      const extra: Migration = {
        version: LATEST + 1,
        name: 'test_extra',
        async up(trx) {
          await trx.schema.createTable('test_extra').addColumn('x', 'integer').execute();
        },
      };
      const broken: Migration = {
        version: LATEST + 2,
        name: 'test_broken',
        async up(trx) {
          await trx.schema.createTable('test_broken').addColumn('x', 'integer').execute();
          throw new Error('boom');
        },
      };
      await assert.rejects(migrate(db, engine, [...MIGRATIONS, extra, broken]), /boom/);
      assert.equal(await currentSchemaVersion(db), LATEST + 1);
      assert.ok(await tableExists(db, 'test_extra'));
      assert.ok(!(await tableExists(db, 'test_broken')), 'the failed migration left nothing behind');
      assert.deepEqual(await migrate(db, engine, [...MIGRATIONS, extra]), []);
    });

    it('openStorage reports a first start only once', async () => {
      const t = await fresh();
      const s1 = await openStorage(t.config);
      assert.equal(s1.freshlyCreated, true);
      await s1.close();
      const s2 = await openStorage(t.config);
      assert.equal(s2.freshlyCreated, false);
      await s2.close();
    });

    it('refuses a database written by a newer version with SchemaTooNewError', async () => {
      const t = await fresh();
      const db = kysely(t);
      await migrate(db, engine);
      await db
        .insertInto('schema_version')
        .values({ version: LATEST + 1, name: 'from_the_future', applied_ts: Date.now() })
        .execute();

      let storage: Storage | undefined;
      await assert.rejects(
        (async () => {
          storage = await openStorage(t.config);
        })(),
        (err: unknown) =>
          err instanceof SchemaTooNewError &&
          err.message.includes(`version ${LATEST + 1}`) &&
          err.message.includes(`up to ${LATEST}`),
      );
      await storage?.close();
      await assert.rejects(migrate(db, engine), SchemaTooNewError);
      // Nothing was changed.
      const rows = await db.selectFrom('schema_version').select('version').execute();
      assert.equal(rows.length, MIGRATIONS.length + 1);
    });

    if (engine === 'postgres') {
      it('lets two servers migrate the same database at once', async () => {
        const t = await fresh();
        const a = kysely(t);
        const b = kysely(t);
        await sql`SELECT 1`.execute(a);
        const results = await Promise.allSettled([migrate(a, engine), migrate(b, engine)]);
        const failures = results.filter((r) => r.status === 'rejected');
        assert.deepEqual(failures, []);
        const applied = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
        assert.deepEqual(
          applied.sort((x, y) => x - y),
          MIGRATIONS.map((m) => m.version),
        );
        assert.equal(await currentSchemaVersion(a), LATEST);
      });
    }
  });
}
