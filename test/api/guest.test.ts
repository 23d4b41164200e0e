/**
 * Guest access (client-server API module "Guest Access", SyTest tests/30rooms/13guestaccess.pl): guest registration
 * per allow_guest_access, the endpoints a guest may call, joins gated by m.room.guest_access, guests leaving when it
 * is revoked, and the upgrade of a guest account, on every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

const REGISTER = '/_matrix/client/v3/register';
const WHOAMI = '/_matrix/client/v3/account/whoami';
const enc = encodeURIComponent;

async function registerGuest(server: TestServer): Promise<Client & { userId: string }> {
  const res = await server.client().post(`${REGISTER}?kind=guest`, {});
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const c = server.client(res.body.access_token as string);
  return Object.assign(c, { userId: res.body.user_id as string });
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

for (const engine of ENGINES) {
  describe(`${engine}: guest access disabled (the default)`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, { enable_registration: true });
    });
    after(() => server.close());

    it('refuses guest registration with 403 M_FORBIDDEN "Guest access is disabled"', async () => {
      const res = await server.client().post(`${REGISTER}?kind=guest`, {});
      assert.equal(res.status, 403);
      assert.deepEqual(res.body, { errcode: 'M_FORBIDDEN', error: 'Guest access is disabled' });
    });
  });

  describe(`${engine}: guest access enabled`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, { enable_registration: true, allow_guest_access: true });
    });
    after(() => server.close());

    it('registers a guest account with a token', async () => {
      const guest = await registerGuest(server);
      assert.match(guest.userId, /^@\d+:test\.local$/);
      const me = await guest.get(WHOAMI);
      assert.equal(me.status, 200);
      assert.deepEqual(
        { user_id: me.body.user_id, is_guest: me.body.is_guest },
        { user_id: guest.userId, is_guest: true },
      );
    });

    it("lets a guest call only the endpoints of the Guest Access module (and Synapse's few more)", async () => {
      const guest = await registerGuest(server);
      const me = enc(guest.userId);
      const refused: [string, string, Json?][] = [
        ['POST', '/_matrix/client/v3/createRoom', {}],
        ['PUT', `/_matrix/client/v3/profile/${me}/avatar_url`, { avatar_url: 'mxc://test.local/x' }],
        ['POST', `/_matrix/client/v3/user/${me}/filter`, {}],
        ['GET', '/_matrix/client/v3/pushrules/'],
        ['PUT', `/_matrix/client/v3/user/${me}/account_data/m.test`, {}],
        ['POST', '/_matrix/client/v3/user_directory/search', { search_term: 'a' }],
        ['POST', '/_matrix/client/v3/account/password', { new_password: 'x' }],
        ['POST', '/_matrix/media/v3/upload', {}],
      ];
      for (const [method, path, body] of refused) {
        const res = await guest.request(method, path, body);
        assert.equal(res.status, 403, `${method} ${path}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, 'M_GUEST_ACCESS_FORBIDDEN', `${method} ${path}`);
      }
      const allowed: [string, string, Json?][] = [
        ['GET', '/_matrix/client/v3/sync?timeout=0'],
        ['GET', WHOAMI],
        ['GET', '/_matrix/client/v3/devices'],
        ['PUT', `/_matrix/client/v3/profile/${me}/displayname`, { displayname: 'creeper' }],
        ['POST', '/_matrix/client/v3/keys/query', { device_keys: { [guest.userId]: [] } }],
        ['GET', '/_matrix/client/v3/capabilities'],
        ['GET', '/_matrix/client/v3/joined_rooms'],
      ];
      for (const [method, path, body] of allowed) {
        const res = await guest.request(method, path, body);
        assert.equal(res.status, 200, `${method} ${path}: ${JSON.stringify(res.body)}`);
      }
      assert.equal(
        (await server.client().get(`/_matrix/client/v3/profile/${me}/displayname`)).body.displayname,
        'creeper',
      );
      // A full account is not restricted.
      const alice = await server.user('g_alice');
      assert.equal((await alice.post('/_matrix/client/v3/createRoom', {})).status, 200);
    });

    it('lets guests join only rooms whose m.room.guest_access is can_join, and makes them leave on revocation', async () => {
      const alice = await server.user('g_owner');
      const room = (await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
        .room_id as string;
      const guest = await registerGuest(server);
      const joinPath = `/_matrix/client/v3/rooms/${enc(room)}/join`;

      let res = await guest.post(joinPath, {});
      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.equal(res.body.errcode, 'M_GUEST_ACCESS_FORBIDDEN');
      res = await guest.post(`/_matrix/client/v3/join/${enc(room)}`, {});
      assert.equal(res.status, 403);

      const accessPath = `/_matrix/client/v3/rooms/${enc(room)}/state/m.room.guest_access`;
      assert.equal((await alice.put(accessPath, { guest_access: 'can_join' })).status, 200);
      res = await guest.post(joinPath, {});
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const memberPath = `/_matrix/client/v3/rooms/${enc(room)}/state/m.room.member/${enc(guest.userId)}`;
      const member = await alice.get(memberPath);
      assert.equal(member.body.membership, 'join');
      assert.equal(member.body.kind, 'guest');

      // A joined guest sends messages; it may not invite.
      const sent = await guest.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/t1`, {
        msgtype: 'm.text',
        body: 'sup',
      });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      const messages = await alice.get(`/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=1`);
      const last = (messages.body.chunk as Json[])[0];
      assert.equal(last?.sender, guest.userId);
      const invite = await guest.post(`/_matrix/client/v3/rooms/${enc(room)}/invite`, {
        user_id: alice.userId,
      });
      assert.equal(invite.body.errcode, 'M_GUEST_ACCESS_FORBIDDEN');

      // Revoking guest access makes the guest leave; a full member stays.
      assert.equal((await alice.put(accessPath, { guest_access: 'forbidden' })).status, 200);
      await waitFor(
        async () => (await alice.get(memberPath)).body.membership === 'leave',
        'the guest to leave the room',
      );
      const aliceMember = await alice.get(
        `/_matrix/client/v3/rooms/${enc(room)}/state/m.room.member/${enc(alice.userId)}`,
      );
      assert.equal(aliceMember.body.membership, 'join');
      res = await guest.post(joinPath, {});
      assert.equal(res.body.errcode, 'M_GUEST_ACCESS_FORBIDDEN');
    });

    it('upgrades a guest to a full account with its guest_access_token, and only its own', async () => {
      const guest = await registerGuest(server);
      const other = await registerGuest(server);
      const localpart = guest.userId.slice(1, guest.userId.indexOf(':'));
      const c = server.client();

      const stolen = await c.post(REGISTER, {
        username: localpart,
        password: 'pw',
        guest_access_token: other.token,
        auth: { type: 'm.login.dummy' },
      });
      assert.equal(stolen.status, 403);
      assert.equal(stolen.body.errcode, 'M_FORBIDDEN');
      const taken = await c.post(REGISTER, {
        username: localpart,
        password: 'pw',
        auth: { type: 'm.login.dummy' },
      });
      assert.equal(taken.status, 400);

      const body = { username: localpart, password: 'SIR_Arthur_David', guest_access_token: guest.token };
      assert.equal((await c.post(REGISTER, body)).status, 401);
      const up = await c.post(REGISTER, { ...body, auth: { type: 'm.login.dummy' } });
      assert.equal(up.status, 200, JSON.stringify(up.body));
      assert.equal(up.body.user_id, guest.userId);
      const full = server.client(up.body.access_token as string);
      assert.equal((await full.get(WHOAMI)).body.is_guest, false);
      assert.equal((await full.post('/_matrix/client/v3/createRoom', {})).status, 200);
      const login = await c.post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: localpart },
        password: 'SIR_Arthur_David',
      });
      assert.equal(login.status, 200);
    });
  });
}
