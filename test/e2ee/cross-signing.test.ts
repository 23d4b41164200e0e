/** POST /keys/device_signing/upload (UIA as Synapse) and /keys/signatures/upload, on every engine. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { csKey, deviceKeys, ed25519, ok, sign } from './helpers.js';

const PASSWORD = 'correct horse battery staple';
type Keys = Record<string, Record<string, Json>>;

for (const engine of ENGINES) {
  describe(`${engine}: cross-signing`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('uploads keys (first without UIA, replacement with the password) and verifies every signature', async () => {
      const alice = await server.user('x_alice');
      const bob = await server.user('x_bob');
      const dev = deviceKeys(alice);
      await ok(alice.post('/_matrix/client/v3/keys/upload', { device_keys: dev.keys }));
      const master = ed25519();
      const ssk = ed25519();
      const usk = ed25519();
      const upload = {
        master_key: csKey(alice.userId, 'master', master),
        self_signing_key: csKey(alice.userId, 'self_signing', ssk, master),
        user_signing_key: csKey(alice.userId, 'user_signing', usk, master),
      };
      let res = await alice.post('/_matrix/client/v3/keys/device_signing/upload', {
        ...upload,
        self_signing_key: csKey(alice.userId, 'self_signing', ssk, ed25519()),
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_INVALID_SIGNATURE');
      res = await alice.post('/_matrix/client/v3/keys/device_signing/upload', {
        master_key: csKey(bob.userId, 'master', master),
      });
      assert.equal(res.status, 400);
      res = await alice.post('/_matrix/client/v3/keys/device_signing/upload', {
        self_signing_key: upload.self_signing_key,
      });
      assert.equal(res.status, 400, 'no master key to check against');
      await ok(alice.post('/_matrix/client/v3/keys/device_signing/upload', upload));
      await ok(alice.post('/_matrix/client/v3/keys/device_signing/upload', upload)); // the same keys again

      const master2 = ed25519();
      const replace = {
        master_key: csKey(alice.userId, 'master', master2),
        self_signing_key: csKey(alice.userId, 'self_signing', ssk, master2),
      };
      res = await alice.post('/_matrix/client/v3/keys/device_signing/upload', replace);
      assert.equal(res.status, 401);
      const auth = {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'x_alice' },
        password: PASSWORD,
        session: res.body.session,
      };
      res = await alice.post('/_matrix/client/v3/keys/device_signing/upload', {
        ...replace,
        auth: { ...auth, password: 'wrong' },
      });
      assert.equal(res.status, 401);
      await ok(alice.post('/_matrix/client/v3/keys/device_signing/upload', { ...replace, auth }));

      // Signatures: the device by the self-signing key, the master key by the device, Bob's master by Alice.
      const bobMaster = ed25519();
      await ok(
        bob.post('/_matrix/client/v3/keys/device_signing/upload', {
          master_key: csKey(bob.userId, 'master', bobMaster),
        }),
      );
      const signedDevice = sign(dev.keys, alice.userId, ssk);
      const signedMaster = sign(replace.master_key, alice.userId, dev.key, alice.deviceId);
      const forged = sign(csKey(bob.userId, 'master', bobMaster), alice.userId, ed25519(), usk.pub);
      const sigs = await ok(
        alice.post('/_matrix/client/v3/keys/signatures/upload', {
          [alice.userId]: {
            [alice.deviceId]: signedDevice,
            [master2.pub]: signedMaster,
            NODEVICE: sign({ ...dev.keys, device_id: 'NODEVICE' }, alice.userId, ssk),
          },
          [bob.userId]: { [bobMaster.pub]: forged },
        }),
      );
      const failures = sigs.failures as Record<string, Record<string, Json>>;
      assert.equal(failures[alice.userId]?.NODEVICE?.errcode, 'M_NOT_FOUND');
      assert.equal(failures[bob.userId]?.[bobMaster.pub]?.errcode, 'M_INVALID_SIGNATURE');
      assert.equal(failures[alice.userId]?.[alice.deviceId], undefined);
      assert.equal(failures[alice.userId]?.[master2.pub], undefined);
      // Alice's user-signing key was not replaced: it is still signed by the old master key, which is fine for
      // storage; a valid user-signing signature of Bob's master key is accepted.
      const good = sign(csKey(bob.userId, 'master', bobMaster), alice.userId, usk);
      const ok2 = await ok(
        alice.post('/_matrix/client/v3/keys/signatures/upload', { [bob.userId]: { [bobMaster.pub]: good } }),
      );
      assert.deepEqual(ok2.failures, {});

      const byBob = await ok(
        bob.post('/_matrix/client/v3/keys/query', { device_keys: { [alice.userId]: [], [bob.userId]: [] } }),
      );
      const device = (byBob.device_keys as Keys)[alice.userId]?.[alice.deviceId];
      assert.equal(
        ((device?.signatures as Keys)[alice.userId] as Json)[`ed25519:${ssk.pub}`] !== undefined,
        true,
      );
      const aliceMaster = (byBob.master_keys as Record<string, Json>)[alice.userId];
      assert.ok(((aliceMaster?.signatures as Keys)[alice.userId] as Json)[`ed25519:${alice.deviceId}`]);
      assert.ok((byBob.self_signing_keys as Json)[alice.userId]);
      assert.deepEqual(byBob.user_signing_keys, {}, "another user's user-signing key is not shown");
      const bobsMaster = (byBob.master_keys as Record<string, Json>)[bob.userId];
      assert.equal(
        (bobsMaster?.signatures as Keys | undefined)?.[alice.userId],
        undefined,
        "Alice's signature is hers to see",
      );

      const byAlice = await ok(
        alice.post('/_matrix/client/v3/keys/query', {
          device_keys: { [alice.userId]: [], [bob.userId]: [] },
        }),
      );
      assert.ok((byAlice.user_signing_keys as Json)[alice.userId]);
      const seen = (byAlice.master_keys as Record<string, Json>)[bob.userId];
      assert.ok(((seen?.signatures as Keys)[alice.userId] as Json)[`ed25519:${usk.pub}`]);

      res = await alice.post('/_matrix/client/v3/keys/signatures/upload', { [bob.userId]: 'x' });
      assert.equal(res.status, 400);
    });
  });
}
