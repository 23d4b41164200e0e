/** The server key tables (migration 0012) on every engine: what a newer, older or conflicting answer may change. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openStorage, type Storage } from '../../src/storage/db.js';
import {
  getKeyResponse,
  getVerifyKey,
  storeKeyResponse,
  storeVerifyKeys,
  type StoredVerifyKey,
} from '../../src/storage/server-keys.js';
import { ENGINES, freshDatabase, type TestDatabase } from '../helpers/engines.js';

const row = (over: Partial<StoredVerifyKey>): StoredVerifyKey => ({
  server_name: 'remote.example',
  key_id: 'ed25519:k1',
  verify_key: 'KEY1',
  valid_until_ts: 1_000,
  expired_ts: null,
  from_server: 'remote.example',
  fetched_ts: 1,
  ...over,
});

for (const engine of ENGINES) {
  describe(`${engine}: server key store`, () => {
    let t: TestDatabase;
    let storage: Storage;
    before(async () => {
      t = await freshDatabase(engine);
      storage = await openStorage(t.config);
    });
    after(async () => {
      await storage.close();
      await t.drop();
    });

    it('lets a current key grow its validity, never shrink it', async () => {
      await storeVerifyKeys(storage.db, [row({ valid_until_ts: 1_000 })]);
      await storeVerifyKeys(storage.db, [
        row({ valid_until_ts: 5_000, from_server: 'notary.example', fetched_ts: 2 }),
      ]);
      await storeVerifyKeys(storage.db, [row({ valid_until_ts: 2_000, fetched_ts: 3 })]);
      const k = await getVerifyKey(storage.db, 'remote.example', 'ed25519:k1');
      assert.equal(k?.valid_until_ts, 5_000);
      assert.equal(k?.expired_ts, null);
    });

    it('keeps a key old once it was listed as old, and ignores another key under a known id', async () => {
      await storeVerifyKeys(storage.db, [row({ expired_ts: 3_000, valid_until_ts: 3_000, fetched_ts: 4 })]);
      await storeVerifyKeys(storage.db, [row({ valid_until_ts: 9_000, fetched_ts: 5 })]);
      await storeVerifyKeys(storage.db, [
        row({ verify_key: 'OTHER', valid_until_ts: 99_000, fetched_ts: 6 }),
      ]);
      const k = await getVerifyKey(storage.db, 'remote.example', 'ed25519:k1');
      assert.deepEqual([k?.verify_key, k?.expired_ts, k?.valid_until_ts], ['KEY1', 3_000, 3_000]);
    });

    it('replaces a stored key response only with one valid for at least as long', async () => {
      const base = { server_name: 'remote.example', fetched_ts: 1 };
      await storeKeyResponse(storage.db, { ...base, json: '{"v":2}', valid_until_ts: 2_000 });
      await storeKeyResponse(storage.db, { ...base, json: '{"v":1}', valid_until_ts: 1_000 });
      assert.equal((await getKeyResponse(storage.db, 'remote.example'))?.json, '{"v":2}');
      await storeKeyResponse(storage.db, { ...base, json: '{"v":3}', valid_until_ts: 3_000, fetched_ts: 9 });
      const r = await getKeyResponse(storage.db, 'remote.example');
      assert.deepEqual([r?.json, r?.valid_until_ts, r?.fetched_ts], ['{"v":3}', 3_000, 9]);
    });
  });
}
