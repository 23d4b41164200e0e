/**
 * Ignored senders in push (push/sender.ts): once bob has alice in m.ignored_user_list, alice's messages reach
 * neither bob's pusher nor his GET /notifications, while carol's still do; once he un-ignores her (the exclusions
 * cache must be cleared by the write), her next message is pushed again.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, eventually, join, sleep, text, type User } from '../sync/sync-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: push skips ignored senders`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    const received: { eventId: string; unread: unknown }[] = [];
    const gateway = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const n = (JSON.parse(body) as Json).notification as Json;
        received.push({ eventId: n.event_id as string, unread: (n.counts as Json | undefined)?.unread });
        res.setHeader('content-type', 'application/json');
        res.end('{"rejected":[]}');
      });
    });
    const pushed = (eventId: string): boolean => received.some((r) => r.eventId === eventId);
    before(async () => {
      await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}/_matrix/push/v1/notify`;
      server = await startTestServer(engine);
      alice = await server.user('ip_alice');
      bob = await server.user('ip_bob');
      carol = await server.user('ip_carol');
      const set = {
        kind: 'http',
        app_id: 'com.example.ignored',
        pushkey: 'ignored-key',
        app_display_name: 'Example',
        device_display_name: 'Phone',
        lang: 'en',
        data: { url },
      };
      assert.equal((await bob.post('/_matrix/client/v3/pushers/set', set)).status, 200);
    });
    after(async () => {
      await server.close();
      await new Promise<void>((r) => gateway.close(() => r()));
    });

    const ignore = async (users: string[]): Promise<void> => {
      const path = `/_matrix/client/v3/user/${enc(bob.userId)}/account_data/m.ignored_user_list`;
      const ignored_users = Object.fromEntries(users.map((u) => [u, {}]));
      assert.equal((await bob.put(path, { ignored_users })).status, 200);
    };
    const notified = async (): Promise<string[]> => {
      const res = await bob.get('/_matrix/client/v3/notifications?limit=100');
      assert.equal(res.status, 200);
      return (res.body.notifications as { event: Json }[]).map((n) => n.event.event_id as string);
    };

    it('no push and no notification from an ignored sender; pushed again once un-ignored', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await join(carol, room);
      // Cache bob's (empty) exclusions and rules first, so a missing invalidation would show.
      const before = await text(alice, room, 'before ignoring');
      await eventually(async () => pushed(before));

      await ignore([alice.userId]);
      const hidden = await text(alice, room, 'while ignored');
      const marker = await text(carol, room, 'from carol');
      await eventually(async () => pushed(marker));
      await sleep(100);
      assert.ok(!pushed(hidden), "the ignored sender's message is not pushed");
      const carolPush = received.find((r) => r.eventId === marker);
      // The unread count sent along leaves out every message of the ignored sender (as /sync's count does).
      assert.equal(carolPush?.unread, 1);
      const notes = await notified();
      assert.ok(notes.includes(marker));
      assert.ok(!notes.includes(hidden), 'not in GET /notifications either');

      await ignore([]);
      const again = await text(alice, room, 'after un-ignoring');
      await eventually(async () => pushed(again));
      assert.ok(!pushed(hidden));
      assert.ok((await notified()).includes(again));
    });
  });
}
