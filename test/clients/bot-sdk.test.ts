/**
 * Hearth with matrix-bot-sdk (npm), the bot library of many bridges and bots: a MatrixClient with a
 * MemoryStorageProvider syncs, auto-joins an invite (AutojoinRoomsMixin), receives a command from an HTTP user and
 * replies to it (a rich reply); the test asserts the reply reaches the HTTP user, on every engine.
 *
 * 0.7.1 is the last release for Node 20 (0.8 needs Node 22). Its end-to-end encryption is a native module that
 * downloads its binary from GitHub at install time, which neither CI nor the developers' machines can reach; the
 * bot does not use encryption, so that module is replaced by a stub that fails if anything calls it.
 */
import assert from 'node:assert/strict';
import Module, { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import type { MatrixClient } from 'matrix-bot-sdk';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, text, type User } from '../sync/sync-util.js';
import { until } from '../helpers/until.js';

/** Puts a stub for the native crypto module in the CommonJS cache, where the sdk's require() finds it first. */
function stubNativeCrypto(): void {
  const sdkRequire = createRequire(createRequire(import.meta.url).resolve('matrix-bot-sdk'));
  const path = sdkRequire.resolve('@matrix-org/matrix-sdk-crypto-nodejs');
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

interface MessageEvent {
  event_id: string;
  sender: string;
  content: { msgtype?: string; body?: string };
}

/** The room's newest events, as the HTTP user sees them. */
async function recent(user: User, roomId: string): Promise<Json[]> {
  const res = await user.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=20`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.chunk as Json[];
}

for (const engine of ENGINES) {
  describe(`${engine}: matrix-bot-sdk`, () => {
    let server: TestServer;
    let bot: MatrixClient | undefined;

    before(async () => {
      server = await startTestServer(engine);
    });
    after(async () => {
      bot?.stop();
      await server.close();
    });

    it('a bot auto-joins an invite, receives a command and its reply reaches the sender', async () => {
      const botUser = await server.user('bot');
      const alice = await server.user('bot_alice');
      const client = new botSdk.MatrixClient(
        server.url,
        botUser.token as string,
        new botSdk.MemoryStorageProvider(),
      );
      bot = client;
      botSdk.AutojoinRoomsMixin.setupOnClient(client);
      const joined: string[] = [];
      client.on('room.join', (roomId: string) => joined.push(roomId));
      client.on('room.message', (roomId: string, event: MessageEvent) => {
        const body = event.content.body;
        if (event.sender === botUser.userId || !body?.startsWith('!echo ')) return;
        void client.replyNotice(roomId, event, `echo: ${body.slice('!echo '.length)}`);
      });
      await client.start();
      assert.equal(await client.getUserId(), botUser.userId, 'whoami through the sdk');

      const room = await createRoom(alice, { preset: 'private_chat', invite: [botUser.userId] });
      // The bot's sync delivers the invite; the mixin joins; the join comes back through the bot's sync.
      await until('the bot to join', async () => (joined.includes(room) ? true : undefined));
      const members = await alice.get(`/_matrix/client/v3/rooms/${enc(room)}/joined_members`);
      assert.ok(
        Object.keys(members.body.joined as Json).includes(botUser.userId),
        JSON.stringify(members.body),
      );

      const command = await text(alice, room, '!echo hello bot');
      const reply = await until('the reply', async () =>
        (await recent(alice, room)).find((e) => e.sender === botUser.userId && e.type === 'm.room.message'),
      );
      const content = reply.content as Json;
      assert.equal(content.msgtype, 'm.notice');
      assert.match(content.body as string, /echo: hello bot$/);
      assert.equal(
        ((content['m.relates_to'] as Json)['m.in_reply_to'] as Json).event_id,
        command,
        'a rich reply to the command',
      );
    });
  });
}
