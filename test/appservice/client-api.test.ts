import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { Client, startTestServer, type TestServer } from '../helpers/server.js';

const AS_TOKEN = 'as-token-bridge';
const HS_TOKEN = 'hs-token-bridge';
const OTHER_TOKEN = 'as-token-other';

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  body: unknown;
}

/** A tiny application service: answers queries (creating what is asked through the HS), pings and third-party lookups. */
class FakeAppService {
  seen: Seen[] = [];
  pingStatus = 200;
  hsUrl = '';
  #server: Server = createServer((req, res) => void this.#handle(req, res));

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of req) text += String(chunk);
    const url = req.url ?? '';
    this.seen.push({
      method: req.method ?? '',
      url,
      auth: req.headers.authorization,
      body: text ? JSON.parse(text) : undefined,
    });
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${HS_TOKEN}`) return send(403, { errcode: 'M_FORBIDDEN' });
    const path = new URL(url, 'http://x').pathname;
    const hs = new Client(this.hsUrl, AS_TOKEN);
    if (path === '/_matrix/app/v1/users/%40_bridge_lazy%3Atest.local') {
      await hs.post('/_matrix/client/v3/register', {
        type: 'm.login.application_service',
        username: '_bridge_lazy',
        inhibit_login: true,
      });
      return send(200, {});
    }
    if (path === '/_matrix/app/v1/rooms/%23_bridge_lazy%3Atest.local') {
      const made = await hs.post('/_matrix/client/v3/createRoom', {
        room_alias_name: '_bridge_lazy',
        preset: 'public_chat',
      });
      return send(made.status === 200 ? 200 : 500, {});
    }
    if (path === '/_matrix/app/v1/ping')
      return send(this.pingStatus, this.pingStatus === 200 ? {} : { errcode: 'M_UNKNOWN' });
    if (path === '/_matrix/app/v1/thirdparty/protocol/chat')
      return send(200, {
        user_fields: ['name'],
        location_fields: ['channel'],
        icon: 'mxc://x/y',
        field_types: {},
        instances: [{ desc: 'Chat net', network_id: 'chatnet', fields: {} }],
      });
    if (path === '/_matrix/app/v1/thirdparty/location/chat')
      return send(200, [{ alias: '#_bridge_x:test.local', protocol: 'chat', fields: { channel: 'x' } }]);
    if (path === '/_matrix/app/v1/thirdparty/user')
      return send(200, [{ userid: '@_bridge_x:test.local', protocol: 'chat', fields: { name: 'x' } }]);
    if (path.startsWith('/_matrix/app/v1/transactions/')) return send(200, {});
    return send(404, { errcode: 'M_NOT_FOUND' });
  }
}

const registration = (url: string | null, extra = '') => `
id: bridge
url: ${url === null ? 'null' : url}
as_token: ${AS_TOKEN}
hs_token: ${HS_TOKEN}
sender_localpart: bridgebot
rate_limited: false
protocols: [chat]
namespaces:
  users:
    - exclusive: true
      regex: "@_bridge_.*:test\\\\.local"
  aliases:
    - exclusive: true
      regex: "#_bridge_.*:test\\\\.local"
${extra}`;

const other = `
id: other
url: null
as_token: ${OTHER_TOKEN}
hs_token: hs-other
sender_localpart: otherbot
namespaces:
  users:
    - exclusive: false
      regex: "@_other_.*"
`;

for (const engine of ENGINES) {
  describe(`${engine}: application services, client-server side`, () => {
    let server: TestServer;
    let fake: FakeAppService;
    let dir: string;
    let as: Client;

    before(async () => {
      fake = new FakeAppService();
      const url = await fake.start();
      dir = mkdtempSync(join(tmpdir(), 'hearth-as-'));
      writeFileSync(join(dir, 'bridge.yaml'), registration(url));
      writeFileSync(join(dir, 'other.yaml'), other);
      writeFileSync(
        join(dir, 'down.yaml'),
        'id: down\nurl: http://127.0.0.1:1\nas_token: as-down\nhs_token: hs-down\nsender_localpart: downbot\n',
      );
      server = await startTestServer(engine, {
        app_service_config_files: [join(dir, 'bridge.yaml'), join(dir, 'other.yaml'), join(dir, 'down.yaml')],
        enable_registration: true,
        rate_limiting: {
          enabled: true,
          message: { per_second: 0.01, burst_count: 2 },
          login: { per_second: 100, burst_count: 100 },
          register: { per_second: 100, burst_count: 100 },
          joins: { per_second: 100, burst_count: 100 },
        },
      });
      fake.hsUrl = server.url;
      as = server.client(AS_TOKEN);
    });
    after(async () => {
      await server.close();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('registers users of its namespace without a password, and refuses others', async () => {
      const made = await as.post('/_matrix/client/v3/register', {
        type: 'm.login.application_service',
        username: '_bridge_alice',
      });
      assert.equal(made.status, 200, JSON.stringify(made.body));
      assert.equal(made.body.user_id, '@_bridge_alice:test.local');
      assert.equal(typeof made.body.access_token, 'string');
      const who = await server
        .client(made.body.access_token as string)
        .get('/_matrix/client/v3/account/whoami');
      assert.equal(who.body.user_id, '@_bridge_alice:test.local');

      const inhibited = await as.post('/_matrix/client/v3/register', {
        type: 'm.login.application_service',
        username: '_bridge_bob',
        inhibit_login: true,
      });
      assert.equal(inhibited.status, 200);
      assert.deepEqual(Object.keys(inhibited.body).sort(), ['home_server', 'user_id']);

      const outside = await as.post('/_matrix/client/v3/register', {
        type: 'm.login.application_service',
        username: 'carol',
      });
      assert.equal(outside.status, 400);
      assert.equal(outside.body.errcode, 'M_EXCLUSIVE');
      // Another AS may not take a user of this one's exclusive namespace.
      const stolen = await server
        .client(OTHER_TOKEN)
        .post('/_matrix/client/v3/register', { type: 'm.login.application_service', username: '_bridge_x' });
      assert.equal(stolen.body.errcode, 'M_EXCLUSIVE');
      const noToken = await server
        .client()
        .post('/_matrix/client/v3/register', { type: 'm.login.application_service', username: '_bridge_y' });
      assert.equal(noToken.status, 401);
      assert.equal(noToken.body.errcode, 'M_MISSING_TOKEN');
      const badToken = await server
        .client('nope')
        .post('/_matrix/client/v3/register', { type: 'm.login.application_service', username: '_bridge_y' });
      assert.equal(badToken.status, 401);
      assert.equal(badToken.body.errcode, 'M_UNKNOWN_TOKEN');
    });

    it('refuses ordinary registration inside an exclusive namespace', async () => {
      const res = await server.client().post('/_matrix/client/v3/register', {
        username: '_bridge_mallory',
        password: 'a long enough password',
        auth: { type: 'm.login.dummy' },
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_EXCLUSIVE');
      const avail = await server
        .client()
        .get('/_matrix/client/v3/register/available?username=_bridge_mallory');
      assert.equal(avail.body.errcode, 'M_EXCLUSIVE');
      // The shared-secret admin registration too.
      const { nonce } = (await server.client().get('/_synapse/admin/v1/register')).body as { nonce: string };
      const mac = createHmac('sha1', 'test-shared-secret')
        .update([nonce, '_bridge_mallory', 'pw', 'notadmin'].join('\0'))
        .digest('hex');
      const shared = await server.client().post('/_synapse/admin/v1/register', {
        nonce,
        username: '_bridge_mallory',
        password: 'pw',
        mac,
      });
      assert.equal(shared.status, 400);
      assert.equal(shared.body.errcode, 'M_EXCLUSIVE');
    });

    it('logs in users of its namespace with m.login.application_service', async () => {
      const flows = await server.client().get('/_matrix/client/v3/login');
      assert.ok(
        (flows.body.flows as { type: string }[]).some((f) => f.type === 'm.login.application_service'),
      );
      const res = await as.post('/_matrix/client/v3/login', {
        type: 'm.login.application_service',
        identifier: { type: 'm.id.user', user: '_bridge_bob' },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.user_id, '@_bridge_bob:test.local');
      const outside = await as.post('/_matrix/client/v3/login', {
        type: 'm.login.application_service',
        identifier: { type: 'm.id.user', user: 'someone' },
      });
      assert.equal(outside.body.errcode, 'M_EXCLUSIVE');
      const noAs = await server.client().post('/_matrix/client/v3/login', {
        type: 'm.login.application_service',
        identifier: { type: 'm.id.user', user: '_bridge_bob' },
      });
      assert.equal(noAs.status, 401);
    });

    it('masquerades as users of its namespace and their devices', async () => {
      const alice = await as.get('/_matrix/client/v3/account/whoami?user_id=@_bridge_alice:test.local');
      assert.equal(alice.status, 200);
      assert.equal(alice.body.user_id, '@_bridge_alice:test.local');
      const sender = await as.get('/_matrix/client/v3/account/whoami');
      assert.equal(sender.body.user_id, '@bridgebot:test.local');
      // By query parameter too.
      const byQuery = await server.client().get(`/_matrix/client/v3/account/whoami?access_token=${AS_TOKEN}`);
      assert.equal(byQuery.body.user_id, '@bridgebot:test.local');

      const bob = await server.user('bob');
      const outside = await as.get(
        `/_matrix/client/v3/account/whoami?user_id=${encodeURIComponent(bob.userId)}`,
      );
      assert.equal(outside.status, 403);
      assert.equal(outside.body.errcode, 'M_FORBIDDEN');
      const unregistered = await as.get(
        '/_matrix/client/v3/account/whoami?user_id=@_bridge_ghost:test.local',
      );
      assert.equal(unregistered.status, 403);

      const login = await as.post('/_matrix/client/v3/login', {
        type: 'm.login.application_service',
        identifier: { type: 'm.id.user', user: '_bridge_alice' },
        device_id: 'ALICEDEV',
      });
      assert.equal(login.status, 200);
      const withDevice = await as.get(
        '/_matrix/client/v3/account/whoami?user_id=@_bridge_alice:test.local&device_id=ALICEDEV',
      );
      assert.equal(withDevice.body.device_id, 'ALICEDEV');
      const msc = await as.get(
        '/_matrix/client/v3/account/whoami?user_id=@_bridge_alice:test.local&org.matrix.msc3202.device_id=ALICEDEV',
      );
      assert.equal(msc.body.device_id, 'ALICEDEV');
      const noDevice = await as.get(
        '/_matrix/client/v3/account/whoami?user_id=@_bridge_alice:test.local&device_id=NOPE',
      );
      assert.equal(noDevice.status, 400);
      assert.equal(noDevice.body.errcode, 'M_UNKNOWN_DEVICE');
      // Keys need a device: refused without device_id, accepted with it.
      const keysNoDevice = await as.post(
        '/_matrix/client/v3/keys/upload?user_id=@_bridge_alice:test.local',
        {},
      );
      assert.equal(keysNoDevice.status, 400);
      const keys = await as.post(
        '/_matrix/client/v3/keys/upload?user_id=@_bridge_alice:test.local&device_id=ALICEDEV',
        { one_time_keys: { 'signed_curve25519:AAAA': { key: 'k', signatures: {} } } },
      );
      assert.equal(keys.status, 200, JSON.stringify(keys.body));
      assert.equal((keys.body.one_time_key_counts as Record<string, number>).signed_curve25519, 1);
      const badToken = await server.client('as-token-wrong').get('/_matrix/client/v3/account/whoami');
      assert.equal(badToken.status, 401);
      assert.equal(badToken.body.errcode, 'M_UNKNOWN_TOKEN');
    });

    it('creates and deletes devices of its users without user-interactive auth (MSC4190)', async () => {
      const path = '/_matrix/client/v3/devices/BRIDGEDEV?user_id=@_bridge_alice:test.local';
      const made = await as.put(path, { display_name: 'Bridge device' });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      assert.equal((await as.put(path, { display_name: 'Renamed' })).status, 200);
      const who = await as.get(
        '/_matrix/client/v3/account/whoami?user_id=@_bridge_alice:test.local&device_id=BRIDGEDEV',
      );
      assert.equal(who.body.device_id, 'BRIDGEDEV');
      const dev = await as.get(path);
      assert.equal(dev.body.display_name, 'Renamed');
      assert.equal((await as.delete(path, {})).status, 200);
      assert.equal((await as.get(path)).status, 404);
      // An ordinary user cannot create a device this way.
      const henry = await server.user('henry');
      assert.equal((await henry.put('/_matrix/client/v3/devices/NEWDEV', {})).status, 404);
    });

    it('is exempt from message rate limits with rate_limited: false; users are not', async () => {
      const room = await as.post('/_matrix/client/v3/createRoom', {});
      assert.equal(room.status, 200);
      const roomId = encodeURIComponent(room.body.room_id as string);
      for (let i = 0; i < 5; i++) {
        const sent = await as.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/as${i}`, {
          msgtype: 'm.text',
          body: `${i}`,
        });
        assert.equal(sent.status, 200, JSON.stringify(sent.body));
      }
      // Timestamp massaging: ?ts= sets origin_server_ts for the AS (a bad value is 400).
      const dated = await as.put(
        `/_matrix/client/v3/rooms/${roomId}/send/m.room.message/ts1?ts=1234567890123`,
        {
          msgtype: 'm.text',
          body: 'old',
        },
      );
      assert.equal(dated.status, 200);
      const ev = await as.get(
        `/_matrix/client/v3/rooms/${roomId}/event/${encodeURIComponent(dated.body.event_id as string)}`,
      );
      assert.equal(ev.body.origin_server_ts, 1234567890123);
      const stateTs = await as.put(`/_matrix/client/v3/rooms/${roomId}/state/m.room.topic?ts=1000`, {
        topic: 't',
      });
      const topic = await as.get(
        `/_matrix/client/v3/rooms/${roomId}/event/${encodeURIComponent(stateTs.body.event_id as string)}`,
      );
      assert.equal(topic.body.origin_server_ts, 1000);
      const badTs = await as.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/ts2?ts=soon`, {
        body: 'x',
      });
      assert.equal(badTs.status, 400);
      const carol = await server.user('carol');
      const own = await carol.post('/_matrix/client/v3/createRoom', {});
      const ownId = encodeURIComponent(own.body.room_id as string);
      const codes: number[] = [];
      for (let i = 0; i < 4; i++)
        codes.push(
          (
            await carol.put(`/_matrix/client/v3/rooms/${ownId}/send/m.room.message/c${i}`, {
              msgtype: 'm.text',
              body: 'x',
            })
          ).status,
        );
      assert.ok(codes.includes(429), `carol was not limited: ${codes.join(',')}`);
    });

    it('keeps exclusive aliases to their AS, which needs no membership for them', async () => {
      const dave = await server.user('dave');
      const room = await dave.post('/_matrix/client/v3/createRoom', {});
      const roomId = room.body.room_id as string;
      const byUser = await dave.put('/_matrix/client/v3/directory/room/%23_bridge_taken:test.local', {
        room_id: roomId,
      });
      assert.equal(byUser.status, 400);
      assert.equal(byUser.body.errcode, 'M_EXCLUSIVE');
      const byOtherAs = await server
        .client(OTHER_TOKEN)
        .put('/_matrix/client/v3/directory/room/%23_bridge_taken:test.local', { room_id: roomId });
      assert.equal(byOtherAs.body.errcode, 'M_EXCLUSIVE');
      const outsideOwn = await as.put('/_matrix/client/v3/directory/room/%23plain:test.local', {
        room_id: roomId,
      });
      assert.equal(outsideOwn.body.errcode, 'M_EXCLUSIVE');
      const byAs = await as.put('/_matrix/client/v3/directory/room/%23_bridge_taken:test.local', {
        room_id: roomId,
      });
      assert.equal(byAs.status, 200, JSON.stringify(byAs.body));
      const plain = await dave.put('/_matrix/client/v3/directory/room/%23plain:test.local', {
        room_id: roomId,
      });
      assert.equal(plain.status, 200);
    });

    it('asks the AS about unknown aliases and users of its namespaces', async () => {
      const dave = server.client();
      const alias = await dave.get('/_matrix/client/v3/directory/room/%23_bridge_lazy:test.local');
      assert.equal(alias.status, 200, JSON.stringify(alias.body));
      assert.match(alias.body.room_id as string, /^!/);
      const query = fake.seen.find((s) => s.url.startsWith('/_matrix/app/v1/rooms/'));
      assert.equal(query?.auth, `Bearer ${HS_TOKEN}`);
      assert.match(query?.url ?? '', /access_token=hs-token-bridge/);
      const unknown = await dave.get('/_matrix/client/v3/directory/room/%23_bridge_nothing:test.local');
      assert.equal(unknown.status, 404);
      // Outside every namespace the AS is not asked.
      const queries = () => fake.seen.filter((q) => q.url.startsWith('/_matrix/app/v1/rooms/')).length;
      const asked = queries();
      assert.equal((await dave.get('/_matrix/client/v3/directory/room/%23nothing:test.local')).status, 404);
      assert.equal(queries(), asked);

      const profile = await dave.get('/_matrix/client/v3/profile/@_bridge_lazy:test.local');
      assert.equal(profile.status, 200, JSON.stringify(profile.body));
      assert.equal((await dave.get('/_matrix/client/v3/profile/@_bridge_never:test.local')).status, 404);

      // An invite to an unknown user of the namespace asks the AS first.
      const inviter = await server.user('ivan');
      const invRoom = await inviter.post('/_matrix/client/v3/createRoom', {});
      const usersAsked = () => fake.seen.filter((q) => q.url.startsWith('/_matrix/app/v1/users/')).length;
      const beforeInvite = usersAsked();
      const invited = await inviter.post(
        `/_matrix/client/v3/rooms/${encodeURIComponent(invRoom.body.room_id as string)}/invite`,
        {
          user_id: '@_bridge_invitee:test.local',
        },
      );
      assert.equal(invited.status, 200);
      assert.equal(usersAsked(), beforeInvite + 1);

      // Joining by an alias the AS makes on demand.
      const erin = await server.user('erin');
      const joined = await erin.post('/_matrix/client/v3/join/%23_bridge_lazy:test.local', {});
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      assert.equal(joined.body.room_id, alias.body.room_id);
    });

    it('answers /thirdparty from the protocols of its appservices', async () => {
      const dave = await server.user('frank');
      const all = await dave.get('/_matrix/client/v3/thirdparty/protocols');
      assert.equal(all.status, 200);
      const chat = all.body.chat as { instances: { instance_id: string }[] };
      assert.equal(chat.instances[0]?.instance_id, 'bridge|chatnet');
      const one = await dave.get('/_matrix/client/v3/thirdparty/protocol/chat');
      assert.deepEqual(one.body, all.body.chat);
      assert.equal((await dave.get('/_matrix/client/v3/thirdparty/protocol/nope')).status, 404);
      const loc = await dave.get('/_matrix/client/v3/thirdparty/location/chat?channel=x');
      assert.deepEqual(loc.body, [
        { alias: '#_bridge_x:test.local', protocol: 'chat', fields: { channel: 'x' } },
      ]);
      const seen = fake.seen.find((s) => s.url.startsWith('/_matrix/app/v1/thirdparty/location/chat'));
      assert.match(seen?.url ?? '', /channel=x/);
      const user = await dave.get('/_matrix/client/v3/thirdparty/user?userid=@_bridge_x:test.local');
      assert.equal((user.body as unknown as unknown[]).length, 1);
    });

    it('publishes rooms in its network directory, listed apart from the server list', async () => {
      const gina = await server.user('gina');
      const bridged = await as.post('/_matrix/client/v3/createRoom', {
        preset: 'public_chat',
        name: 'Bridged',
      });
      const local = await gina.post('/_matrix/client/v3/createRoom', {
        preset: 'public_chat',
        name: 'Local',
        visibility: 'public',
      });
      const bridgedId = bridged.body.room_id as string;
      const path = `/_matrix/client/v3/directory/list/appservice/chatnet/${encodeURIComponent(bridgedId)}`;
      const unknownRoom = await as.put('/_matrix/client/v3/directory/list/appservice/chatnet/not-a-room', {
        visibility: 'public',
      });
      assert.equal(unknownRoom.status, 404);
      assert.equal((await as.put(path, { visibility: 'sideways' })).status, 400);
      assert.equal((await as.post('/_matrix/client/v1/appservice/bridge/ping', [])).status, 400);
      assert.equal(
        (await gina.get('/_matrix/client/v3/publicRooms?third_party_instance_id=nobar')).status,
        400,
      );
      const byUser = await gina.put(path, { visibility: 'public' });
      assert.equal(byUser.status, 403);
      const put = await as.put(path, { visibility: 'public' });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      const ids = (r: { body: { chunk?: unknown } }) =>
        ((r.body.chunk ?? []) as { room_id: string }[]).map((c) => c.room_id).sort();

      const plain = await gina.get('/_matrix/client/v3/publicRooms');
      assert.ok(ids(plain).includes(local.body.room_id as string));
      assert.ok(!ids(plain).includes(bridgedId));
      const network = await gina.get(
        '/_matrix/client/v3/publicRooms?third_party_instance_id=bridge%7Cchatnet',
      );
      assert.deepEqual(ids(network), [bridgedId]);
      const all = await gina.post('/_matrix/client/v3/publicRooms', { include_all_networks: true });
      assert.ok(ids(all).includes(bridgedId) && ids(all).includes(local.body.room_id as string));
      const both = await gina.post('/_matrix/client/v3/publicRooms', {
        include_all_networks: true,
        third_party_instance_id: 'bridge|chatnet',
      });
      assert.equal(both.status, 400);

      assert.equal((await as.put(path, { visibility: 'private' })).status, 200);
      const gone = await gina.get('/_matrix/client/v3/publicRooms?third_party_instance_id=bridge%7Cchatnet');
      assert.deepEqual(ids(gone), []);
    });

    it('pings the AS for its own as_token only', async () => {
      const ok = await as.post('/_matrix/client/v1/appservice/bridge/ping', { transaction_id: 'txn1' });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(typeof ok.body.duration_ms, 'number');
      const ping = fake.seen.filter((s) => s.url.startsWith('/_matrix/app/v1/ping')).at(-1);
      assert.deepEqual(ping?.body, { transaction_id: 'txn1' });
      const wrong = await server.client(OTHER_TOKEN).post('/_matrix/client/v1/appservice/bridge/ping', {});
      assert.equal(wrong.status, 403);
      assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
      const noUrl = await server.client(OTHER_TOKEN).post('/_matrix/client/v1/appservice/other/ping', {});
      assert.equal(noUrl.status, 400);
      assert.equal(noUrl.body.errcode, 'M_URL_NOT_SET');
      const down = await server.client('as-down').post('/_matrix/client/v1/appservice/down/ping', {});
      assert.equal(down.status, 502);
      assert.equal(down.body.errcode, 'M_CONNECTION_FAILED');
      fake.pingStatus = 500;
      const bad = await as.post('/_matrix/client/v1/appservice/bridge/ping', {});
      fake.pingStatus = 200;
      assert.equal(bad.status, 502);
      assert.equal(bad.body.errcode, 'M_BAD_STATUS');
      assert.equal(bad.body.status, 500);
    });
  });
}
