/**
 * An encrypted DM across two Hearths (issue 12): matrix-js-sdk with its Rust crypto on A (Alice) and on B (Bob).
 * The invite and the join go over federation, device keys are queried and one-time keys claimed over federation,
 * room keys travel as to-device EDUs; each side decrypts the other's message. Then Bob logs in on a new device:
 * B sends a device-list update, Alice's client queries Bob's keys again and her next message decrypts on the new
 * device too. Every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as sdk from 'matrix-js-sdk';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import { cryptoClient, decryptedBody, eventually, unrefLongTimers } from '../clients/js-sdk-crypto.js';
import { stopAllJsClients, waitForRoom, type HearthUser } from '../clients/js-sdk.js';

const PASSWORD = 'correct horse battery staple';
const WAIT_MS = 30_000;

async function login(server: FederatedServer, localpart: string): Promise<HearthUser> {
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

for (const engine of ENGINES) {
  describe(`${engine}: encrypted DM across two Hearths with matrix-js-sdk Rust crypto`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let restoreTimers: () => void;
    before(async () => {
      restoreTimers = unrefLongTimers();
      [a, b] = await Promise.all([startFederatedServer(engine), startFederatedServer(engine)]);
    });
    after(async () => {
      stopAllJsClients();
      restoreTimers();
      await Promise.allSettled([a.close(), b.close()]);
    });

    it("both ways, then Bob's new device on B gets the keys of Alice's next message", async () => {
      const aliceUser = await a.user('alice', { password: PASSWORD });
      const bobUser = await b.user('bob', { password: PASSWORD });
      const alice = await cryptoClient({ ...aliceUser, baseUrl: a.url });
      const bob = await cryptoClient({ ...bobUser, baseUrl: b.url });

      const { room_id: roomId } = await alice.createRoom({
        is_direct: true,
        invite: [bobUser.userId],
        preset: sdk.Preset.TrustedPrivateChat,
        initial_state: [
          { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
        ],
      });
      await waitForRoom(bob, roomId, 'invite', WAIT_MS);
      await bob.joinRoom(roomId);
      await eventually(
        'Alice to see Bob joined',
        () => (alice.getRoom(roomId)?.getMember(bobUser.userId)?.membership === 'join' ? true : undefined),
        WAIT_MS,
      );
      await eventually(
        'Bob to see the room encrypted',
        async () => ((await bob.getCrypto()?.isEncryptionEnabledInRoom(roomId)) ? true : undefined),
        WAIT_MS,
      );

      // Alice -> Bob: Bob's device keys and a one-time key come from B, the room key goes to B as an EDU.
      const m1 = await send(alice, roomId, 'Hello Bob, across servers 🔐');
      assert.equal(await decryptedBody(bob, roomId, m1, WAIT_MS), 'Hello Bob, across servers 🔐');

      // Bob -> Alice.
      const m2 = await send(bob, roomId, 'Hi Alice, decrypted on B');
      assert.equal(await decryptedBody(alice, roomId, m2, WAIT_MS), 'Hi Alice, decrypted on B');

      // Bob's new device: Alice's client hears of it through a device-list update from B.
      const bob2User = await login(b, 'bob');
      const bob2 = await cryptoClient(bob2User);
      await eventually('bob2 to know the room', () => (bob2.getRoom(roomId) ? true : undefined), WAIT_MS);
      await eventually(
        "Alice to learn of Bob's new device",
        async () => {
          const devices = await alice.getCrypto()?.getUserDeviceInfo([bobUser.userId]);
          return devices?.get(bobUser.userId)?.has(bob2User.deviceId) ? true : undefined;
        },
        WAIT_MS,
      );
      const m3 = await send(alice, roomId, 'Both of your devices should read this');
      assert.equal(await decryptedBody(bob2, roomId, m3, WAIT_MS), 'Both of your devices should read this');
      assert.equal(await decryptedBody(bob, roomId, m3, WAIT_MS), 'Both of your devices should read this');
    });
  });
}
