/**
 * The push sender's cached "is there any http pusher?" (push/sender.ts): a server that had none, and answered its
 * commits without a query, pushes the very next message once a pusher is set, and stops once it is deleted.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, eventually, join, sleep, text, type User } from '../sync/sync-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: push sender pusher cache`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    const received: string[] = [];
    const gateway = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const n = (JSON.parse(body) as Json).notification as Json;
        received.push(n.event_id as string);
        res.setHeader('content-type', 'application/json');
        res.end('{"rejected":[]}');
      });
    });
    let url = '';
    before(async () => {
      await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}/_matrix/push/v1/notify`;
      server = await startTestServer(engine);
      alice = await server.user('pc_alice');
      bob = await server.user('pc_bob');
    });
    after(async () => {
      await server.close();
      await new Promise<void>((r) => gateway.close(() => r()));
    });

    it('pushes the first message after a pusher appears, and none after it is deleted', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await text(alice, room, 'before any pusher');
      const set = {
        kind: 'http',
        app_id: 'com.example.cache',
        pushkey: 'cache-key',
        app_display_name: 'Example',
        device_display_name: 'Phone',
        lang: 'en',
        data: { url },
      };
      assert.equal((await bob.post('/_matrix/client/v3/pushers/set', set)).status, 200);
      const pushed = await text(alice, room, 'after the pusher');
      await eventually(async () => (received.includes(pushed) ? true : undefined));
      assert.equal((await bob.post('/_matrix/client/v3/pushers/set', { ...set, kind: null })).status, 200);
      const quiet = await text(alice, room, 'after deleting it');
      await sleep(200);
      assert.ok(!received.includes(quiet), 'no push once the pusher is gone');
      assert.equal(received.length, 1);
    });
  });
}
