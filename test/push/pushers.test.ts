/** Pushers (GET /pushers, POST /pushers/set) and the push sender, against a fake push gateway on 127.0.0.1. */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, eventually, join, send, sleep, text, type User } from '../sync/sync-util.js';

interface Gateway {
  url: string;
  received: Json[];
  /** Pushkeys to answer as rejected. */
  reject: Set<string>;
  close(): Promise<void>;
}

async function fakeGateway(): Promise<Gateway> {
  const received: Json[] = [];
  const reject = new Set<string>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const parsed = JSON.parse(body) as Json;
      received.push({ path: req.url, ...parsed });
      const devices = ((parsed.notification as Json).devices ?? []) as Json[];
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({ rejected: devices.map((d) => d.pushkey).filter((k) => reject.has(k as string)) }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/_matrix/push/v1/notify`,
    received,
    reject,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

const pusher = (url: string, over: Json = {}): Json => ({
  kind: 'http',
  app_id: 'com.example.app',
  pushkey: 'key-1',
  app_display_name: 'Example',
  device_display_name: 'Phone',
  lang: 'en',
  data: { url, custom: 'x' },
  ...over,
});

for (const engine of ENGINES) {
  describe(`${engine}: pushers and push sending`, () => {
    let server: TestServer;
    let gw: Gateway;
    let alice: User;
    let bob: User;

    before(async () => {
      gw = await fakeGateway();
      server = await startTestServer(engine);
      alice = await server.user('p_alice');
      bob = await server.user('p_bob');
    });
    after(async () => {
      await server.close();
      await gw.close();
    });

    it('sets, lists, replaces and deletes pushers; validates the body', async () => {
      const set = (body: Json) => bob.post('/_matrix/client/v3/pushers/set', body);
      assert.deepEqual((await bob.get('/_matrix/client/v3/pushers')).body, { pushers: [] });
      const noUrl = await set(pusher(gw.url, { data: {} }));
      assert.equal(noUrl.status, 400);
      assert.equal(noUrl.body.errcode, 'M_MISSING_PARAM');
      const noLang = await set({ ...pusher(gw.url), lang: undefined });
      assert.equal(noLang.body.errcode, 'M_MISSING_PARAM');
      assert.equal((await set({ app_id: 'a', pushkey: 'k' })).body.errcode, 'M_MISSING_PARAM');
      const badPath = await set(pusher('http://127.0.0.1:1/elsewhere'));
      assert.equal(badPath.body.errcode, 'M_INVALID_PARAM');
      assert.equal((await set(pusher(gw.url))).status, 200);
      assert.equal((await set(pusher(gw.url, { pushkey: 'key-2', profile_tag: 'tag' }))).status, 200);
      // Same app_id and pushkey: updated, not added.
      assert.equal((await set(pusher(gw.url, { lang: 'fr' }))).status, 200);
      const listed = (await bob.get('/_matrix/client/v3/pushers')).body.pushers as Json[];
      assert.equal(listed.length, 2);
      assert.deepEqual(listed[0], {
        pushkey: 'key-1',
        kind: 'http',
        app_id: 'com.example.app',
        app_display_name: 'Example',
        device_display_name: 'Phone',
        lang: 'fr',
        data: { url: gw.url, custom: 'x' },
      });
      assert.equal(listed[1]?.profile_tag, 'tag');
      assert.equal((await set({ kind: null, app_id: 'com.example.app', pushkey: 'key-2' })).status, 200);
      assert.deepEqual(
        ((await bob.get('/_matrix/client/v3/pushers')).body.pushers as Json[]).map((p) => p.pushkey),
        ['key-1'],
      );
    });

    it('append=false takes the pushkey from other users; append=true shares it', async () => {
      const carol = await server.user('p_carol');
      const dave = await server.user('p_dave');
      const shared = pusher(gw.url, { app_id: 'com.shared', pushkey: 'shared' });
      assert.equal((await carol.post('/_matrix/client/v3/pushers/set', shared)).status, 200);
      await dave.post('/_matrix/client/v3/pushers/set', { ...shared, append: true });
      assert.equal(((await carol.get('/_matrix/client/v3/pushers')).body.pushers as Json[]).length, 1);
      await dave.post('/_matrix/client/v3/pushers/set', shared);
      assert.equal(((await carol.get('/_matrix/client/v3/pushers')).body.pushers as Json[]).length, 0);
      assert.equal(((await dave.get('/_matrix/client/v3/pushers')).body.pushers as Json[]).length, 1);
    });

    it("a device's pushers go when it logs out or is deleted", async () => {
      const erin = await server.user('p_erin', { password: 'pw-erin-1' });
      await erin.post('/_matrix/client/v3/pushers/set', pusher(gw.url, { pushkey: 'erin' }));
      assert.equal(((await erin.get('/_matrix/client/v3/pushers')).body.pushers as Json[]).length, 1);
      const login = await server.client().post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'p_erin' },
        password: 'pw-erin-1',
      });
      assert.equal(login.status, 200);
      const other = server.client(login.body.access_token as string);
      assert.equal((await erin.post('/_matrix/client/v3/logout')).status, 200);
      assert.deepEqual((await other.get('/_matrix/client/v3/pushers')).body, { pushers: [] });
    });

    it('pushes notifying events to the gateway, in full and event_id_only formats; rejected keys are removed', async () => {
      await bob.post('/_matrix/client/v3/pushers/set', pusher(gw.url, { pushkey: 'key-1' }));
      const room = await createRoom(alice, { preset: 'public_chat', name: 'Pushy' });
      await join(bob, room);
      await alice.put('/_matrix/client/v3/profile/' + encodeURIComponent(alice.userId) + '/displayname', {
        displayname: 'Alice A',
      });
      const before = gw.received.length;
      const hello = await text(alice, room, 'hello bob');
      const got = await eventually(async () =>
        gw.received.slice(before).find((r) => (r.notification as Json).event_id === hello),
      );
      assert.equal(got.path, '/_matrix/push/v1/notify');
      const n = got.notification as Json;
      assert.equal(n.room_id, room);
      assert.equal(n.type, 'm.room.message');
      assert.equal(n.sender, alice.userId);
      assert.equal(n.sender_display_name, 'Alice A');
      assert.equal(n.room_name, 'Pushy');
      assert.deepEqual(n.content, { msgtype: 'm.text', body: 'hello bob' });
      assert.equal(n.prio, 'high');
      assert.deepEqual(n.counts, { unread: 1 });
      const devices = n.devices as Json[];
      assert.equal(devices.length, 1);
      assert.equal(devices[0]?.app_id, 'com.example.app');
      assert.equal(devices[0]?.pushkey, 'key-1');
      assert.deepEqual(devices[0]?.data, { custom: 'x' }, 'url is not forwarded');
      assert.deepEqual(devices[0]?.tweaks, { sound: 'default' });
      assert.equal(typeof devices[0]?.pushkey_ts, 'number');

      // A notice does not notify: nothing is pushed for it, nor for the sender's own events.
      const mark = gw.received.length;
      await send(alice, room, { msgtype: 'm.notice', body: 'quiet' });
      await text(bob, room, 'my own');
      await sleep(200);
      assert.equal(gw.received.length, mark);

      await bob.post(
        '/_matrix/client/v3/pushers/set',
        pusher(gw.url, { data: { url: gw.url, format: 'event_id_only' } }),
      );
      const second = await text(alice, room, 'again');
      const slim = await eventually(async () =>
        gw.received.find((r) => (r.notification as Json).event_id === second),
      );
      const sn = slim.notification as Json;
      assert.deepEqual(Object.keys(sn).sort(), ['counts', 'devices', 'event_id', 'prio', 'room_id']);
      assert.deepEqual((sn.devices as Json[])[0]?.data, { format: 'event_id_only' });

      gw.reject.add('key-1');
      await text(alice, room, 'rejected');
      await eventually(async () =>
        ((await bob.get('/_matrix/client/v3/pushers')).body.pushers as Json[]).length === 0
          ? true
          : undefined,
      );
    });

    it('a dead gateway does not block sending', async () => {
      await bob.post(
        '/_matrix/client/v3/pushers/set',
        pusher('http://127.0.0.1:1/_matrix/push/v1/notify', { pushkey: 'dead' }),
      );
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      const t0 = Date.now();
      await text(alice, room, 'still works');
      assert.ok(Date.now() - t0 < 2000);
    });
  });
}
