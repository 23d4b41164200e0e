/**
 * A bridge built on matrix-bot-sdk's Appservice class (npm) against a running Hearth, on every engine: it registers
 * a virtual user, which creates a room, invites and is joined by a local user, sends as the virtual user, receives
 * the local user's message through a transaction, and makes a room for an alias of its namespace on demand.
 *
 * The sdk's native crypto module is stubbed as in test/clients/bot-sdk.test.ts (encryption is not used).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Appservice } from 'matrix-bot-sdk';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/until.js';

function stubNativeCrypto(): void {
  const sdkRequire = createRequire(createRequire(import.meta.url).resolve('matrix-bot-sdk'));
  const path = sdkRequire.resolve('@matrix-org/matrix-sdk-crypto-nodejs');
  if (sdkRequire.cache[path]) return;
  const stub = new Module(path);
  stub.exports = new Proxy(
    {},
    {
      get: (_target, name) =>
        name === '__esModule'
          ? false
          : () => {
              throw new Error(`matrix-bot-sdk used its native crypto (${String(name)}) in a test without it`);
            },
    },
  );
  stub.loaded = true;
  sdkRequire.cache[path] = stub;
}

stubNativeCrypto();
const botSdk = await import('matrix-bot-sdk');
botSdk.LogService.setLevel(botSdk.LogLevel.ERROR);

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

const enc = encodeURIComponent;

for (const engine of ENGINES) {
  describe(`${engine}: a matrix-bot-sdk Appservice bridge`, () => {
    let server: TestServer;
    let dir: string;
    let appservice: Appservice;
    let alice: Client & { userId: string };
    const received: Json[] = [];

    before(async () => {
      const port = await freePort();
      const registration = {
        id: 'sdkbridge',
        url: `http://127.0.0.1:${port}`,
        as_token: 'sdk-as-token',
        hs_token: 'sdk-hs-token',
        sender_localpart: 'sdkbridge',
        rate_limited: false,
        namespaces: {
          users: [{ exclusive: true, regex: '@_sdk_.*:test\\.local' }],
          aliases: [{ exclusive: true, regex: '#_sdk_.*:test\\.local' }],
          rooms: [],
        },
      };
      dir = mkdtempSync(join(tmpdir(), 'hearth-as-sdk-'));
      // JSON is YAML.
      writeFileSync(join(dir, 'sdk.yaml'), JSON.stringify(registration));
      server = await startTestServer(engine, { app_service_config_files: [join(dir, 'sdk.yaml')] });
      appservice = new botSdk.Appservice({
        port,
        bindAddress: '127.0.0.1',
        homeserverName: server.serverName,
        homeserverUrl: server.url,
        registration,
        storage: new botSdk.MemoryStorageProvider(),
      });
      appservice.on('room.message', (_roomId: string, event: Json) => {
        received.push(event);
      });
      appservice.on('query.room', (_alias: string, createRoom: (opts: Json | false) => Promise<void>) => {
        void createRoom({ preset: 'public_chat', name: 'Made on demand' });
      });
      await appservice.begin();
      alice = await server.user('alice');
    });
    after(async () => {
      appservice.stop();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('registers a virtual user that creates a room, talks to a local user and hears it back', async () => {
      const intent = appservice.getIntentForUserId('@_sdk_bob:test.local');
      await intent.ensureRegistered();
      const profile = await alice.get('/_matrix/client/v3/profile/@_sdk_bob:test.local');
      assert.equal(profile.status, 200);

      const roomId = await intent.underlyingClient.createRoom({
        preset: 'private_chat',
        invite: [alice.userId],
      });
      assert.equal((await alice.post(`/_matrix/client/v3/join/${enc(roomId)}`, {})).status, 200);
      await intent.sendText(roomId, 'hello from the bridge');
      const messages = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=10`);
      const fromBob = (messages.body.chunk as Json[]).find(
        (e) => e.type === 'm.room.message' && e.sender === '@_sdk_bob:test.local',
      );
      assert.equal((fromBob?.content as Json | undefined)?.body, 'hello from the bridge');

      const sent = await alice.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/t1`, {
        msgtype: 'm.text',
        body: 'hello bridge',
      });
      assert.equal(sent.status, 200);
      const got = await until('the local message in a transaction', () =>
        received.find((e) => e.event_id === sent.body.event_id),
      );
      assert.equal(got.sender, alice.userId);
      assert.equal(got.room_id, roomId);

      // A second virtual user joins a room the local user made.
      const own = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const carol = appservice.getIntentForUserId('@_sdk_carol:test.local');
      await carol.joinRoom(own.body.room_id as string);
      const members = await alice.get(
        `/_matrix/client/v3/rooms/${enc(own.body.room_id as string)}/joined_members`,
      );
      assert.ok(Object.keys(members.body.joined as Json).includes('@_sdk_carol:test.local'));
    });

    it('makes a room for an alias of its namespace when a local user looks it up', async () => {
      const found = await alice.get(`/_matrix/client/v3/directory/room/${enc('#_sdk_lobby:test.local')}`);
      assert.equal(found.status, 200, JSON.stringify(found.body));
      const joined = await alice.post(`/_matrix/client/v3/join/${enc('#_sdk_lobby:test.local')}`, {});
      assert.equal(joined.status, 200);
      assert.equal(joined.body.room_id, found.body.room_id);
      const name = await alice.get(
        `/_matrix/client/v3/rooms/${enc(found.body.room_id as string)}/state/m.room.name/`,
      );
      assert.equal(name.body.name, 'Made on demand');
      assert.equal(
        (await alice.get(`/_matrix/client/v3/directory/room/${enc('#_other:test.local')}`)).status,
        404,
      );
    });
  });
}
