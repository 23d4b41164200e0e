/** POST /keys/upload, /keys/query, /keys/claim and GET /keys/changes, with their error cases, on every engine. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, deviceKeys, deviceLists, ok, sync } from './helpers.js';

const PASSWORD = 'correct horse battery staple';

for (const engine of ENGINES) {
  describe(`${engine}: E2EE keys`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('device keys: checked against the caller, queried with the display name', async () => {
      const alice = await server.user('k_alice');
      const bob = await server.user('k_bob');
      await ok(alice.put(`/_matrix/client/v3/devices/${alice.deviceId}`, { display_name: 'Phone' }));
      const { keys, key } = deviceKeys(alice);

      const wrongUser = deviceKeys({ userId: bob.userId, deviceId: alice.deviceId }, key).keys;
      let res = await alice.post('/_matrix/client/v3/keys/upload', { device_keys: wrongUser });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      const wrongDevice = deviceKeys({ userId: alice.userId, deviceId: 'OTHER' }, key).keys;
      res = await alice.post('/_matrix/client/v3/keys/upload', { device_keys: wrongDevice });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      // SyTest "Rejects invalid device keys": algorithms, keys and signatures are required.
      res = await alice.post('/_matrix/client/v3/keys/upload', {
        device_keys: { user_id: alice.userId, device_id: alice.deviceId },
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      const { signatures: _s, ...unsignedKeys } = keys;
      res = await alice.post('/_matrix/client/v3/keys/upload', { device_keys: unsignedKeys });
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      res = await alice.post('/_matrix/client/v3/keys/upload', { device_keys: { ...keys, keys: { a: 1 } } });
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      res = await alice.post('/_matrix/client/v3/keys/upload', { device_keys: 'nope' });
      assert.equal(res.status, 400);

      const up = await ok(alice.post('/_matrix/client/v3/keys/upload', { device_keys: keys }));
      assert.deepEqual(up.one_time_key_counts, { signed_curve25519: 0 });
      await ok(alice.post('/_matrix/client/v3/keys/upload', { device_keys: keys }));
      // Keys differing from the stored ones replace them, as in Synapse.
      const other = deviceKeys(alice).keys;
      await ok(alice.post('/_matrix/client/v3/keys/upload', { device_keys: other }));
      let q0 = await ok(bob.post('/_matrix/client/v3/keys/query', { device_keys: { [alice.userId]: [] } }));
      assert.deepEqual(
        (q0.device_keys as Record<string, Record<string, Json>>)[alice.userId]?.[alice.deviceId]?.keys,
        other.keys,
      );
      await ok(alice.post('/_matrix/client/v3/keys/upload', { device_keys: keys }));
      q0 = await ok(bob.post('/_matrix/client/v3/keys/query', { device_keys: { [alice.userId]: [] } }));
      assert.deepEqual(
        (q0.device_keys as Record<string, Record<string, Json>>)[alice.userId]?.[alice.deviceId]?.keys,
        keys.keys,
      );

      const q = await ok(bob.post('/_matrix/client/v3/keys/query', { device_keys: { [alice.userId]: [] } }));
      const got = (q.device_keys as Record<string, Record<string, Json>>)[alice.userId]?.[alice.deviceId];
      assert.ok(got);
      assert.equal(got.keys && (got.keys as Json)[`ed25519:${alice.deviceId}`], key.pub);
      assert.deepEqual(got.unsigned, { device_display_name: 'Phone' });
      assert.deepEqual(got.signatures, keys.signatures);
      const q2 = await ok(
        bob.post('/_matrix/client/v3/keys/query', {
          device_keys: { '@nobody:test.local': [], '@x:elsewhere.example': [], [alice.userId]: ['NOPE'] },
        }),
      );
      assert.deepEqual(q2.device_keys, { '@nobody:test.local': {}, [alice.userId]: {} });
      assert.ok((q2.failures as Json)['elsewhere.example']);
      res = await bob.post('/_matrix/client/v3/keys/query', { device_keys: { [alice.userId]: 'all' } });
      assert.equal(res.status, 400);
    });

    it('device keys whose self-signature does not verify are stored and served as uploaded (as Synapse)', async () => {
      const carol = await server.user('k_placeholder');
      const dave = await server.user('k_querier');
      // SyTest "Can upload device keys": placeholder keys and signature.
      const placeholder = {
        user_id: carol.userId,
        device_id: carol.deviceId,
        algorithms: ['m.olm.curve25519-aes-sha256', 'm.megolm.v1.aes-sha'],
        keys: {
          [`curve25519:${carol.deviceId}`]: 'curve25519+key',
          [`ed25519:${carol.deviceId}`]: 'ed25519+key',
        },
        signatures: { [carol.userId]: { [`ed25519:${carol.deviceId}`]: 'self+signature' } },
        unsigned: { from_client: true },
      };
      const up = await ok(
        carol.post('/_matrix/client/v3/keys/upload', {
          device_keys: placeholder,
          one_time_keys: { 'my_algorithm:my_id_1': 'KIhHVkAQi8r41aPNql2zTqQsInpFa8XdslQLC8F8BHc' },
        }),
      );
      assert.equal((up.one_time_key_counts as Json).my_algorithm, 1);
      const q = await ok(dave.post('/_matrix/client/v3/keys/query', { device_keys: { [carol.userId]: [] } }));
      const got = (q.device_keys as Record<string, Record<string, Json>>)[carol.userId]?.[carol.deviceId];
      // Served as uploaded, with the server's `unsigned` (always present; no display name was set).
      const { unsigned: _u, ...uploaded } = placeholder;
      assert.deepEqual(got, { ...uploaded, unsigned: {} });

      // SyTest's device-list tests upload keys with empty signatures and no curve25519 key.
      const erin = await server.user('k_nocurve');
      await ok(
        erin.post('/_matrix/client/v3/keys/upload', {
          device_keys: {
            user_id: erin.userId,
            device_id: erin.deviceId,
            algorithms: ['m.olm.v1.curve25519-aes-sha2'],
            keys: { [`ed25519:${erin.deviceId}`]: 'aI2BUUeIQ0Y8T7Tv7jJh2ADagpoWdtHf4XipFPvjXI8' },
            signatures: {},
          },
        }),
      );
      const q2 = await ok(dave.post('/_matrix/client/v3/keys/query', { device_keys: { [erin.userId]: [] } }));
      assert.ok((q2.device_keys as Record<string, Json>)[erin.userId]?.[erin.deviceId]);
    });

    it('one-time keys: counts per algorithm, conflicting re-upload refused, atomic claims, fallback key', async () => {
      const carol = await server.user('k_carol');
      const dave = await server.user('k_dave');
      const otks: Json = {};
      for (let i = 0; i < 5; i++) otks[`signed_curve25519:AAA${i}`] = { key: `k${i}`, signatures: {} };
      otks['curve25519:B1'] = 'plain';
      const up = await ok(carol.post('/_matrix/client/v3/keys/upload', { one_time_keys: otks }));
      assert.deepEqual(up.one_time_key_counts, { signed_curve25519: 5, curve25519: 1 });
      await ok(carol.post('/_matrix/client/v3/keys/upload', { one_time_keys: { 'curve25519:B1': 'plain' } }));
      let res = await carol.post('/_matrix/client/v3/keys/upload', {
        one_time_keys: { 'curve25519:B1': 'other' },
      });
      assert.equal(res.status, 400);
      res = await carol.post('/_matrix/client/v3/keys/upload', { one_time_keys: { nocolon: 'x' } });
      assert.equal(res.status, 400);
      await ok(
        carol.post('/_matrix/client/v3/keys/upload', {
          fallback_keys: { 'signed_curve25519:FB': { key: 'fb', fallback: true, signatures: {} } },
        }),
      );
      let s = await sync(carol);
      assert.deepEqual(s.device_unused_fallback_key_types, ['signed_curve25519']);
      assert.deepEqual(s.device_one_time_keys_count, { signed_curve25519: 5, curve25519: 1 });

      const claim = () =>
        ok(
          dave.post('/_matrix/client/v3/keys/claim', {
            one_time_keys: { [carol.userId]: { [carol.deviceId]: 'signed_curve25519' } },
          }),
        );
      const results = await Promise.all(Array.from({ length: 8 }, claim));
      const ids = results.map((r) => {
        const dev = (r.one_time_keys as Record<string, Record<string, Json>>)[carol.userId]?.[carol.deviceId];
        return Object.keys(dev ?? {})[0];
      });
      const real = ids.filter((id) => id !== 'signed_curve25519:FB');
      assert.equal(new Set(real).size, 5, `five distinct one-time keys: ${ids.join(',')}`);
      assert.equal(ids.filter((id) => id === 'signed_curve25519:FB').length, 3, 'then the fallback key');
      s = await sync(carol);
      assert.deepEqual(s.device_unused_fallback_key_types, []);
      assert.deepEqual(s.device_one_time_keys_count, { signed_curve25519: 0, curve25519: 1 });
      // The counts a sync remembered follow a new upload.
      await ok(
        carol.post('/_matrix/client/v3/keys/upload', {
          one_time_keys: { 'signed_curve25519:NEW': { key: 'new', signatures: {} } },
          fallback_keys: { 'signed_curve25519:FB2': { key: 'fb2', fallback: true, signatures: {} } },
        }),
      );
      s = await sync(carol);
      assert.deepEqual(s.device_unused_fallback_key_types, ['signed_curve25519']);
      assert.deepEqual(s.device_one_time_keys_count, { signed_curve25519: 1, curve25519: 1 });

      const none = await ok(
        dave.post('/_matrix/client/v3/keys/claim', {
          one_time_keys: {
            [carol.userId]: { NODEVICE: 'signed_curve25519' },
            '@ghost:test.local': { X: 'signed_curve25519' },
            '@x:elsewhere.example': { X: 'signed_curve25519' },
          },
        }),
      );
      assert.deepEqual(none.one_time_keys, {});
      assert.ok((none.failures as Json)['elsewhere.example']);
      res = await dave.post('/_matrix/client/v3/keys/claim', { one_time_keys: { [carol.userId]: ['x'] } });
      assert.equal(res.status, 400);
    });

    it('device lists: joins, key changes and leaves are reported in /sync and /keys/changes', async () => {
      const erin = await server.user('k_erin');
      const frank = await server.user('k_frank');
      const roomId = await createRoom(erin, { preset: 'public_chat' });
      const start = await sync(erin);
      const since0 = start.next_batch as string;
      await ok(frank.post(`/_matrix/client/v3/join/${encodeURIComponent(roomId)}`));
      let s = await sync(erin, since0);
      assert.deepEqual(deviceLists(s).changed, [frank.userId]);
      const frankInitial = await sync(frank);

      await ok(frank.post('/_matrix/client/v3/keys/upload', { device_keys: deviceKeys(frank).keys }));
      s = await sync(erin, s.next_batch as string);
      assert.deepEqual(deviceLists(s).changed, [frank.userId]);
      const fs = await sync(frank, frankInitial.next_batch as string);
      assert.ok(deviceLists(fs).changed.includes(frank.userId), 'a user hears of their own device changes');

      // A second device: logging in is not yet a change; its keys are.
      const login = await ok(
        server.client().post('/_matrix/client/v3/login', {
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user: 'k_frank' },
          password: PASSWORD,
        }),
      );
      const frank2 = server.client(login.access_token as string);
      const f2 = { userId: frank.userId, deviceId: login.device_id as string };
      await ok(
        frank2.post('/_matrix/client/v3/keys/upload', {
          device_keys: deviceKeys(f2).keys,
          one_time_keys: { 'signed_curve25519:F2': { key: 'f2' } },
          fallback_keys: { 'signed_curve25519:F2FB': { key: 'f2fb', fallback: true } },
        }),
      );
      await ok(
        erin.put('/_matrix/client/v3/sendToDevice/m.test/f2', {
          messages: { [f2.userId]: { [f2.deviceId]: { hello: 1 } } },
        }),
      );
      const changes = await ok(
        erin.get(`/_matrix/client/v3/keys/changes?from=${since0}&to=${s.next_batch as string}`),
      );
      assert.deepEqual(changes, { changed: [frank.userId], left: [] });

      // Deleting the device removes its keys and is a change.
      const before = await sync(erin, s.next_batch as string);
      const del = await frank.delete(`/_matrix/client/v3/devices/${f2.deviceId}`, {});
      assert.equal(del.status, 401);
      await ok(
        frank.request('DELETE', `/_matrix/client/v3/devices/${f2.deviceId}`, {
          auth: {
            type: 'm.login.password',
            identifier: { type: 'm.id.user', user: 'k_frank' },
            password: PASSWORD,
            session: del.body.session,
          },
        }),
      );
      s = await sync(erin, before.next_batch as string);
      assert.deepEqual(deviceLists(s).changed, [frank.userId]);
      const db = server.hs.storage.db;
      for (const table of [
        'e2e_device_keys',
        'e2e_one_time_keys',
        'e2e_fallback_keys',
        'to_device_messages',
      ] as const) {
        const rows = await db
          .selectFrom(table)
          .select('device_id')
          .where('device_id', '=', f2.deviceId)
          .execute();
        assert.deepEqual(rows, [], `${table} rows of the deleted device`);
      }
      const q = await ok(erin.post('/_matrix/client/v3/keys/query', { device_keys: { [frank.userId]: [] } }));
      assert.deepEqual(Object.keys((q.device_keys as Record<string, Json>)[frank.userId] ?? {}), [
        frank.deviceId,
      ]);

      // A stranger's key change is not reported; a leave is.
      const stranger = await server.user('k_stranger');
      await ok(stranger.post('/_matrix/client/v3/keys/upload', { device_keys: deviceKeys(stranger).keys }));
      await ok(frank.post(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`));
      s = await sync(erin, s.next_batch as string);
      assert.deepEqual(deviceLists(s), { changed: [], left: [frank.userId] });
      const bad = await erin.get('/_matrix/client/v3/keys/changes?from=garbage&to=s1');
      assert.equal(bad.status, 400);
    });
  });
}
