/**
 * Reading many state snapshots at once (storage/state.ts loadSnapshots, the read-ahead of an initial sync) gives
 * the same maps as reading each on its own, and leaves out a snapshot whose chain is broken, for the single read to
 * stand in for it and report it. Both engines, on the rows a real room wrote.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { damage } from '../helpers/damage.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, putState, type User } from '../sync/sync-util.js';
import { loadSnapshot, loadSnapshots } from '../../src/storage/state.js';

for (const engine of ENGINES) {
  describe(`${engine}: reading many state snapshots at once`, () => {
    let server: TestServer;
    let alice: User;
    let snapshots: number[];

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('snap_alice');
      const rooms = [await createRoom(alice, { preset: 'public_chat' }), await createRoom(alice)];
      for (const [i, room] of rooms.entries())
        for (let k = 0; k < 4; k++) await putState(alice, room, 'm.room.topic', { topic: `topic ${i}.${k}` });
      const rows = await server.hs.storage.db
        .selectFrom('state_snapshots')
        .select('snapshot_nid')
        .orderBy('snapshot_nid')
        .execute();
      snapshots = rows.map((r) => Number(r.snapshot_nid));
    });
    after(() => server.close());

    it('gives the maps the single read gives', async () => {
      const { db } = server.hs.storage;
      assert.ok(snapshots.length >= 8, `${snapshots.length} snapshots`);
      const many = await loadSnapshots(db, snapshots);
      assert.equal(many.size, snapshots.length);
      for (const nid of snapshots) {
        const one = await loadSnapshot(db, nid);
        assert.ok(one && !one.broken);
        assert.deepEqual(many.get(nid), one.map, `snapshot ${nid}`);
      }
    });

    it('leaves out a snapshot whose chain is broken', async () => {
      const { db } = server.hs.storage;
      const rows = await db
        .selectFrom('state_snapshots')
        .select(['snapshot_nid', 'parent_nid'])
        .where('parent_nid', 'is not', null)
        .orderBy('snapshot_nid', 'desc')
        .execute();
      const newest = rows[0];
      assert.ok(newest);
      const parent = Number(newest.parent_nid);
      await damage(server, async (raw) => {
        await raw.deleteFrom('state_snapshot_entries').where('snapshot_nid', '=', parent).execute();
        await raw.deleteFrom('state_snapshots').where('snapshot_nid', '=', parent).execute();
      });
      const many = await loadSnapshots(db, snapshots);
      assert.equal(many.has(Number(newest.snapshot_nid)), false, 'the broken one is left out');
      assert.equal(many.has(parent), false, 'the missing one is left out');
      const whole = snapshots.filter((n) => n < parent);
      for (const nid of whole) assert.ok(many.has(nid), `snapshot ${nid} still read`);
    });
  });
}
