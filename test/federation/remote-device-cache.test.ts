/**
 * The cache of other servers' users' keys (federation/remote-device-cache.ts): Alice on A queries the keys of Bob on
 * B, with whom she shares a room; while B is down she still gets Bob's last known device keys instead of a failure;
 * when Bob adds a device, B's m.device_list_update makes A ask B again, so the new device shows at once. A user of B
 * who shares no room with anyone on A is never cached: with B down, B is listed in `failures`. Every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import type { Client } from '../helpers/server.js';
import { until } from '../helpers/until.js';

type Me = Client & { userId: string; deviceId: string };
type Json = Record<string, unknown>;

async function uploadDeviceKeys(c: Client, userId: string, deviceId: string): Promise<void> {
  const res = await c.post('/_matrix/client/v3/keys/upload', {
    device_keys: {
      user_id: userId,
      device_id: deviceId,
      algorithms: ['m.olm.v1.curve25519-aes-sha2'],
      keys: { [`curve25519:${deviceId}`]: 'key', [`ed25519:${deviceId}`]: 'key' },
      signatures: { [userId]: { [`ed25519:${deviceId}`]: 'sig' } },
    },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function queryKeys(alice: Client, userId: string): Promise<{ devices: string[]; failures: Json }> {
  const q = await alice.post('/_matrix/client/v3/keys/query', {
    device_keys: { [userId]: [] },
    timeout: 3_000,
  });
  assert.equal(q.status, 200, JSON.stringify(q.body));
  const devices = (q.body.device_keys as Record<string, Json | undefined>)[userId] ?? {};
  return { devices: Object.keys(devices).sort(), failures: q.body.failures as Json };
}

for (const engine of ENGINES) {
  describe(`${engine}: remote device keys cache`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let alice: Me;
    let bob: Me;
    let carol: Me;

    before(async () => {
      [a, b] = await Promise.all([startFederatedServer(engine), startFederatedServer(engine)]);
      alice = await a.user('alice');
      bob = await b.user('bob');
      carol = await b.user('carol');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const roomId = created.body.room_id as string;
      const joined = await bob.post(
        `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${encodeURIComponent(a.serverName)}`,
      );
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      await uploadDeviceKeys(bob, bob.userId, bob.deviceId);
      await uploadDeviceKeys(carol, carol.userId, carol.deviceId);
    });
    after(async () => {
      await Promise.allSettled([a.close(), b.close()]);
    });

    it('serves the last known keys of a user sharing a room while their server is down, and only theirs', async () => {
      const first = await queryKeys(alice, bob.userId);
      assert.deepEqual(first.devices, [bob.deviceId]);
      assert.deepEqual(first.failures, {});
      assert.deepEqual((await queryKeys(alice, carol.userId)).devices, [carol.deviceId]);

      await b.stop();
      const down = await queryKeys(alice, bob.userId);
      assert.deepEqual(down.devices, [bob.deviceId]);
      assert.deepEqual(down.failures, {});
      const untracked = await queryKeys(alice, carol.userId);
      assert.deepEqual(untracked.devices, []);
      assert.equal(
        typeof (untracked.failures[b.serverName] as { status?: unknown } | undefined)?.status,
        'number',
      );
    });

    it("asks again after the user's server announces a device-list change", async () => {
      b = await startFederatedServer(
        engine,
        {},
        { db: b.db, dataDir: b.dataDir, federationPort: b.federationPort },
      );
      const login = await b.client().post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'bob' },
        password: 'correct horse battery staple',
      });
      assert.equal(login.status, 200, JSON.stringify(login.body));
      const second = b.client(login.body.access_token as string);
      const deviceId = login.body.device_id as string;
      await uploadDeviceKeys(second, bob.userId, deviceId);
      const both = [bob.deviceId, deviceId].sort();
      await until('the new device on A', async () => {
        const { devices } = await queryKeys(alice, bob.userId);
        return devices.length === 2 ? devices : undefined;
      }).then((devices) => assert.deepEqual(devices, both));
    });
  });
}
