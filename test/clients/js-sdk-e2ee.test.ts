/**
 * End-to-end encryption checked with a real client: matrix-js-sdk with its Rust crypto (the wasm build of
 * matrix-sdk-crypto) against a Hearth on an ephemeral port, on every engine. Alice and Bob talk in an encrypted
 * DM: every message must decrypt to exactly what was sent, across new devices, deleted devices, cross-signing and
 * a key backup restored on a fresh device.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as sdk from 'matrix-js-sdk';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';
import { cryptoClient, decryptedBody, eventually, unrefLongTimers } from './js-sdk-crypto.js';
import { stopAllJsClients, waitForRoom, type HearthUser } from './js-sdk.js';

const PASSWORD = 'correct horse battery staple';
const WAIT_MS = 20_000;

/** Counts the HTTP requests of every client of a scenario; records what Alice's devices send to devices. */
class Traffic {
  requests = 0;
  /** Recipient devices of each PUT /sendToDevice/m.room.encrypted, in order. */
  encryptedToDevice: { from: string; to: Record<string, string[]> }[] = [];

  fetchFor(label: string): typeof fetch {
    return async (input, init) => {
      this.requests++;
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      if (url.includes('/sendToDevice/m.room.encrypted/') && typeof init?.body === 'string') {
        const body = JSON.parse(init.body) as { messages: Record<string, Record<string, unknown>> };
        const to: Record<string, string[]> = {};
        for (const [user, devices] of Object.entries(body.messages)) to[user] = Object.keys(devices);
        this.encryptedToDevice.push({ from: label, to });
      }
      return fetch(input, init);
    };
  }
}

async function login(server: TestServer, localpart: string): Promise<HearthUser> {
  const res = await server.client().post('/_matrix/client/v3/login', {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user: localpart },
    password: PASSWORD,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return {
    baseUrl: server.url,
    userId: res.body.user_id as string,
    deviceId: res.body.device_id as string,
    token: res.body.access_token as string,
  };
}

async function send(client: sdk.MatrixClient, roomId: string, body: string): Promise<string> {
  return (await client.sendTextMessage(roomId, body)).event_id;
}

function sessionIdOf(client: sdk.MatrixClient, roomId: string, eventId: string): string {
  const ev = client.getRoom(roomId)?.findEventById(eventId);
  return (ev?.getWireContent() as { session_id?: string }).session_id ?? '';
}

const uiaPassword = (localpart: string) => ({
  type: 'm.login.password',
  identifier: { type: 'm.id.user', user: localpart },
  password: PASSWORD,
});

for (const engine of ENGINES) {
  describe(`${engine}: encrypted DM with matrix-js-sdk Rust crypto`, () => {
    let restoreTimers: () => void;
    before(() => {
      restoreTimers = unrefLongTimers();
    });
    after(() => {
      stopAllJsClients();
      restoreTimers();
    });

    it('Alice and Bob exchange encrypted messages across new devices, deleted devices and a key backup', async (t) => {
      const server = await startTestServer(engine);
      const traffic = new Traffic();
      const t0 = Date.now();
      let tStep = t0;
      const steps: string[] = [];
      const mark = (name: string): void => {
        steps.push(`${name} ${Date.now() - tStep} ms`);
        tStep = Date.now();
      };
      try {
        const a = await server.user('alice', { password: PASSWORD });
        const b = await server.user('bob', { password: PASSWORD });
        const alice = await cryptoClient({ ...a, baseUrl: server.url }, traffic.fetchFor('alice1'));
        const bob = await cryptoClient({ ...b, baseUrl: server.url }, traffic.fetchFor('bob1'));
        const bob2User = await login(server, 'bob');
        const bob2 = await cryptoClient(bob2User, traffic.fetchFor('bob2'));

        // 1. A DM with m.room.encryption; Bob joins.
        const { room_id: roomId } = await alice.createRoom({
          is_direct: true,
          invite: [b.userId],
          preset: sdk.Preset.TrustedPrivateChat,
          initial_state: [
            { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
          ],
        });
        await waitForRoom(bob, roomId, 'invite', WAIT_MS);
        await bob.joinRoom(roomId);
        await eventually('Alice to see Bob joined', () =>
          alice.getRoom(roomId)?.getMember(b.userId)?.membership === 'join' ? true : undefined,
        );
        await eventually('bob2 to know the room', () => (bob2.getRoom(roomId) ? true : undefined));
        assert.ok(await alice.getCrypto()?.isEncryptionEnabledInRoom(roomId));

        mark('1 setup+join');
        // 2. Alice -> Bob (both of Bob's devices).
        const m1 = await send(alice, roomId, 'Hello Bob, this is secret 🔐');
        assert.equal(await decryptedBody(bob, roomId, m1), 'Hello Bob, this is secret 🔐');
        assert.equal(await decryptedBody(bob2, roomId, m1), 'Hello Bob, this is secret 🔐');

        mark('2 alice->bob');
        // 3. Bob -> Alice.
        const m2 = await send(bob, roomId, 'Hi Alice, received loud and clear');
        assert.equal(await decryptedBody(alice, roomId, m2), 'Hi Alice, received loud and clear');

        mark('3 bob->alice');
        // 4. Alice's second device decrypts what Bob sends afterwards, as does her first.
        const alice2User = await login(server, 'alice');
        const alice2 = await cryptoClient(alice2User, traffic.fetchFor('alice2'));
        await eventually('alice2 to know the room', () => (alice2.getRoom(roomId) ? true : undefined));
        await eventually("Bob to learn of Alice's new device", async () => {
          const devices = await bob.getCrypto()?.getUserDeviceInfo([a.userId]);
          return devices?.get(a.userId)?.has(alice2User.deviceId) ? true : undefined;
        });
        const m3 = await send(bob, roomId, 'Both of your devices should read this');
        assert.equal(await decryptedBody(alice2, roomId, m3), 'Both of your devices should read this');
        assert.equal(await decryptedBody(alice, roomId, m3), 'Both of your devices should read this');

        mark('4 second device');
        // 5. Bob deletes his second device: Alice's next message is not encrypted to it.
        const bobHttp: Client = server.client(b.token);
        const del = await bobHttp.delete(`/_matrix/client/v3/devices/${bob2User.deviceId}`, {});
        assert.equal(del.status, 401);
        const done = await bobHttp.delete(`/_matrix/client/v3/devices/${bob2User.deviceId}`, {
          auth: { ...uiaPassword('bob'), session: del.body.session },
        });
        assert.equal(done.status, 200, JSON.stringify(done.body));
        await eventually("Alice to forget Bob's deleted device", async () => {
          const devices = await alice.getCrypto()?.getUserDeviceInfo([b.userId]);
          const bobs = devices?.get(b.userId);
          return bobs && !bobs.has(bob2User.deviceId) && bobs.has(b.deviceId) ? true : undefined;
        });
        const sentBefore = traffic.encryptedToDevice.length;
        const m4 = await send(alice, roomId, 'Only your remaining device can read this');
        assert.equal(await decryptedBody(bob, roomId, m4), 'Only your remaining device can read this');
        const shares = traffic.encryptedToDevice.slice(sentBefore).filter((s) => s.from === 'alice1');
        assert.ok(shares.length > 0, 'the room key was re-shared (a new session)');
        for (const s of shares)
          assert.ok(!(s.to[b.userId] ?? []).includes(bob2User.deviceId), JSON.stringify(s));
        assert.notEqual(
          sessionIdOf(alice, roomId, m4),
          sessionIdOf(alice, roomId, m1),
          'the session rotated',
        );
        const left = await server.hs.storage.db
          .selectFrom('e2e_device_keys')
          .select('device_id')
          .where('user_id', '=', b.userId)
          .execute();
        assert.deepEqual(
          left.map((r) => r.device_id),
          [b.deviceId],
        );

        mark('5 deleted device');
        // 6. Cross-signing and key backup through the client; a fresh device restores an old session key.
        const crypto = alice.getCrypto();
        assert.ok(crypto);
        await crypto.bootstrapCrossSigning({
          setupNewCrossSigning: true,
          authUploadDeviceSigningKeys: (makeRequest) => makeRequest(uiaPassword('alice')),
        });
        assert.equal(await crypto.isCrossSigningReady(), true);
        await crypto.resetKeyBackup();
        // resetKeyBackup returns before the new version is checked and enabled.
        const version = await eventually(
          'the new backup to be enabled',
          async () => (await crypto.getActiveSessionBackupVersion()) ?? undefined,
        );
        const aliceHttp: Client = server.client(a.token);
        await eventually('the room keys to reach the backup', async () => {
          const res = await aliceHttp.get(`/_matrix/client/v3/room_keys/version/${version}`);
          return res.status === 200 && (res.body.count as number) >= 2 ? true : undefined;
        });
        const backupKey = await crypto.getSessionBackupPrivateKey();
        assert.ok(backupKey);

        const alice3User = await login(server, 'alice');
        const alice3 = await cryptoClient(alice3User, traffic.fetchFor('alice3'));
        await eventually('alice3 to know the room', () => (alice3.getRoom(roomId) ? true : undefined));
        const crypto3 = alice3.getCrypto();
        assert.ok(crypto3);
        await crypto3.storeSessionBackupPrivateKey(backupKey, version);
        const restored = await crypto3.restoreKeyBackup();
        assert.ok(restored.imported >= 2, JSON.stringify(restored));
        const old = await alice3.fetchRoomEvent(roomId, m1);
        const ev = new sdk.MatrixEvent(old as sdk.IEvent);
        await alice3.decryptEventIfNeeded(ev);
        assert.equal(ev.isDecryptionFailure(), false, ev.decryptionFailureReason ?? '');
        assert.equal((ev.getContent() as Json).body, 'Hello Bob, this is secret 🔐');

        mark('6 cross-signing+backup');
        t.diagnostic(
          `e2ee scenario (${engine}): ${Date.now() - t0} ms, ${traffic.requests} HTTP requests by the clients; ${steps.join(', ')}`,
        );
      } catch (err) {
        t.diagnostic(`e2ee scenario (${engine}) failed after: ${steps.join(', ')}`);
        throw err;
      } finally {
        stopAllJsClients();
        await server.close();
      }
    });
  });
}
