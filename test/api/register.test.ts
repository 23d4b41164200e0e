import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createRegistrationToken } from '../../src/storage/registration-tokens.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const REGISTER = '/_matrix/client/v3/register';
const AVAILABLE = '/_matrix/client/v3/register/available';
const VALIDITY = '/_matrix/client/v1/register/m.login.registration_token/validity';
const WHOAMI = '/_matrix/client/v3/account/whoami';

/** Registers through the m.login.dummy flow; returns the final response. */
async function registerDummy(c: Client, body: Record<string, unknown>) {
  const first = await c.post(REGISTER, body);
  assert.equal(first.status, 401, JSON.stringify(first.body));
  return c.post(REGISTER, { ...body, auth: { type: 'm.login.dummy', session: first.body.session } });
}

for (const engine of ENGINES) {
  describe(`${engine}: registration disabled (the default)`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('refuses registration with 403 M_FORBIDDEN, with or without auth', async () => {
      const c = server.client();
      const res = await c.post(REGISTER, { username: 'nobody', password: 'pw' });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      const withAuth = await c.post(REGISTER, {
        username: 'nobody',
        password: 'pw',
        auth: { type: 'm.login.dummy' },
      });
      assert.equal(withAuth.status, 403);
      assert.equal(withAuth.body.errcode, 'M_FORBIDDEN');
      const avail = await c.get(`${AVAILABLE}?username=nobody`);
      assert.equal(avail.status, 200);
      assert.equal(avail.body.available, true);
    });

    it('refuses guests with 403 M_FORBIDDEN "Guest access is disabled" unless allow_guest_access is set', async () => {
      const res = await server.client().post(`${REGISTER}?kind=guest`, {});
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      assert.equal(res.body.error, 'Guest access is disabled');
    });

    it('answers the token validity endpoint with 403 M_FORBIDDEN', async () => {
      const res = await server.client().get(`${VALIDITY}?token=whatever`);
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
    });
  });

  describe(`${engine}: open registration (m.login.dummy)`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, { enable_registration: true, allow_guest_access: true });
    });
    after(() => server.close());

    it('asks for user-interactive auth first, then registers and logs in', async () => {
      const c = server.client();
      const first = await c.post(REGISTER, { username: 'newbie', password: 'pw-newbie' });
      assert.equal(first.status, 401);
      assert.deepEqual(first.body.flows, [{ stages: ['m.login.dummy'] }]);
      assert.equal(typeof first.body.session, 'string');
      assert.ok((first.body.session as string).length > 0);
      assert.deepEqual(first.body.params, {});
      // Nothing is created by the first call.
      assert.equal((await c.get(`${AVAILABLE}?username=newbie`)).status, 200);

      const second = await c.post(REGISTER, {
        username: 'newbie',
        password: 'pw-newbie',
        initial_device_display_name: 'My phone',
        auth: { type: 'm.login.dummy', session: first.body.session },
      });
      assert.equal(second.status, 200, JSON.stringify(second.body));
      assert.equal(second.body.user_id, '@newbie:test.local');
      assert.equal(second.body.home_server, 'test.local');
      assert.equal(typeof second.body.access_token, 'string');
      assert.equal(typeof second.body.device_id, 'string');
      assert.equal(second.body.refresh_token, undefined);

      const me = await server.client(second.body.access_token as string).get(WHOAMI);
      assert.equal(me.status, 200);
      assert.equal(me.body.user_id, '@newbie:test.local');
      assert.equal(me.body.device_id, second.body.device_id);
      assert.equal(me.body.is_guest, false);
      const dev = await server
        .client(second.body.access_token as string)
        .get(`/_matrix/client/v3/devices/${second.body.device_id as string}`);
      assert.equal(dev.body.display_name, 'My phone');

      // The password registered is the one that logs in.
      const login = await c.post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'newbie' },
        password: 'pw-newbie',
      });
      assert.equal(login.status, 200);
      assert.equal(login.body.user_id, '@newbie:test.local');
    });

    it('does not register another user with a completed UIA session, nor with an unknown one', async () => {
      const c = server.client();
      const first = await c.post(REGISTER, { username: 'once', password: 'pw' });
      const ok = await c.post(REGISTER, {
        username: 'once',
        password: 'pw',
        auth: { type: 'm.login.dummy', session: first.body.session },
      });
      assert.equal(ok.status, 200);
      const again = await c.post(REGISTER, {
        username: 'once2',
        password: 'pw',
        auth: { type: 'm.login.dummy', session: first.body.session },
      });
      assert.equal(again.status, 400);
      assert.equal(again.body.errcode, 'M_UNKNOWN');
      assert.equal((await c.get(`${AVAILABLE}?username=once2`)).status, 200);
      const bogus = await c.post(REGISTER, {
        username: 'once3',
        password: 'pw',
        auth: { type: 'm.login.dummy', session: 'no-such-session' },
      });
      assert.equal(bogus.status, 400);
      assert.equal((await c.get(`${AVAILABLE}?username=once3`)).status, 200);
    });

    it('rejects a taken name with M_USER_IN_USE before user-interactive auth', async () => {
      const c = server.client();
      assert.equal((await registerDummy(c, { username: 'taken', password: 'pw' })).status, 200);
      const res = await c.post(REGISTER, { username: 'taken', password: 'pw' });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_USER_IN_USE');
      assert.equal(res.body.session, undefined);
      const upper = await c.post(REGISTER, { username: 'TAKEN', password: 'pw' });
      assert.equal(upper.status, 400);
      assert.equal(upper.body.errcode, 'M_USER_IN_USE');
      const avail = await c.get(`${AVAILABLE}?username=taken`);
      assert.equal(avail.status, 400);
      assert.equal(avail.body.errcode, 'M_USER_IN_USE');
    });

    it('lower-cases the requested username, as Synapse does', async () => {
      const res = await registerDummy(server.client(), { username: 'MixedCase', password: 'pw' });
      assert.equal(res.status, 200);
      assert.equal(res.body.user_id, '@mixedcase:test.local');
      const avail = await server.client().get(`${AVAILABLE}?username=MIXEDCASE`);
      assert.equal(avail.body.errcode, 'M_USER_IN_USE');
    });

    it('rejects invalid usernames with M_INVALID_USERNAME before user-interactive auth', async () => {
      const c = server.client();
      for (const username of ['a b', 'é', 'al:ice', '@alice', '12345', '', 'x'.repeat(250)]) {
        const res = await c.post(REGISTER, { username, password: 'pw' });
        assert.equal(res.status, 400, `${username}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, 'M_INVALID_USERNAME', username);
        const avail = await c.get(`${AVAILABLE}?username=${encodeURIComponent(username)}`);
        assert.equal(avail.status, 400, username);
        assert.equal(avail.body.errcode, 'M_INVALID_USERNAME', username);
      }
    });

    it('answers /register/available for a free valid name', async () => {
      const res = await server.client().get(`${AVAILABLE}?username=free.name_1-x=y/z`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { available: true });
    });

    it('generates a user id when no username is given', async () => {
      const res = await registerDummy(server.client(), { password: 'pw' });
      assert.equal(res.status, 200);
      assert.match(res.body.user_id as string, /^@[a-z0-9._=\-/+]+:test\.local$/);
    });

    it('needs a password once auth is complete', async () => {
      const res = await registerDummy(server.client(), { username: 'nopass' });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_MISSING_PARAM');
      assert.equal((await server.client().get(`${AVAILABLE}?username=nopass`)).status, 200);
    });

    it('honours inhibit_login: the account exists but no device or token is returned', async () => {
      const res = await registerDummy(server.client(), {
        username: 'quiet',
        password: 'pw-quiet',
        inhibit_login: true,
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.user_id, '@quiet:test.local');
      assert.equal(res.body.access_token, undefined);
      assert.equal(res.body.device_id, undefined);
      const login = await server.client().post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'quiet' },
        password: 'pw-quiet',
      });
      assert.equal(login.status, 200);
      const devices = await server
        .client(login.body.access_token as string)
        .get('/_matrix/client/v3/devices');
      assert.equal((devices.body.devices as unknown[]).length, 1);
    });

    it('uses the device_id given and can issue a refresh token', async () => {
      const res = await registerDummy(server.client(), {
        username: 'withdevice',
        password: 'pw',
        device_id: 'MYDEVICE',
        refresh_token: true,
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.device_id, 'MYDEVICE');
      assert.equal(typeof res.body.refresh_token, 'string');
      assert.equal(typeof res.body.expires_in_ms, 'number');
    });

    it('registers guests when allow_guest_access is set', async () => {
      const res = await server.client().post(`${REGISTER}?kind=guest`, {});
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.match(res.body.user_id as string, /^@\d+:test\.local$/);
      const me = await server.client(res.body.access_token as string).get(WHOAMI);
      assert.equal(me.status, 200);
      assert.equal(me.body.user_id, res.body.user_id);
      assert.equal(me.body.is_guest, true);
    });

    it('rejects an unknown kind', async () => {
      const res = await server.client().post(`${REGISTER}?kind=robot`, {});
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_INVALID_PARAM');
    });
  });

  describe(`${engine}: token-authenticated registration`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, {
        enable_registration: true,
        registration_requires_token: true,
      });
      const db = server.hs.storage.db;
      await createRegistrationToken(db, { token: 'single-use', usesAllowed: 1, expiryTime: null });
      await createRegistrationToken(db, { token: 'many', usesAllowed: null, expiryTime: null });
      await createRegistrationToken(db, { token: 'expired', usesAllowed: null, expiryTime: Date.now() - 1 });
    });
    after(() => server.close());

    const tokenRow = (token: string) =>
      server.hs.storage.db
        .selectFrom('registration_tokens')
        .selectAll()
        .where('token', '=', token)
        .executeTakeFirstOrThrow();

    it('offers only the m.login.registration_token flow', async () => {
      const c = server.client();
      const first = await c.post(REGISTER, { username: 'tok0', password: 'pw' });
      assert.equal(first.status, 401);
      assert.deepEqual(first.body.flows, [{ stages: ['m.login.registration_token'] }]);
      const dummy = await c.post(REGISTER, {
        username: 'tok0',
        password: 'pw',
        auth: { type: 'm.login.dummy', session: first.body.session },
      });
      assert.notEqual(dummy.status, 200);
      assert.equal((await c.get(`${AVAILABLE}?username=tok0`)).status, 200);
    });

    it('rejects an unknown or expired token and registers nothing', async () => {
      const c = server.client();
      for (const token of ['wrong', 'expired']) {
        const first = await c.post(REGISTER, { username: 'tok1', password: 'pw' });
        const res = await c.post(REGISTER, {
          username: 'tok1',
          password: 'pw',
          auth: { type: 'm.login.registration_token', token, session: first.body.session },
        });
        assert.equal(res.status, 401, token);
        assert.equal(res.body.errcode, 'M_UNAUTHORIZED', token);
        assert.deepEqual(res.body.flows, [{ stages: ['m.login.registration_token'] }]);
        assert.equal(res.body.session, first.body.session);
      }
      assert.equal((await c.get(`${AVAILABLE}?username=tok1`)).status, 200);
    });

    it('reports token validity', async () => {
      const c = server.client();
      assert.deepEqual((await c.get(`${VALIDITY}?token=many`)).body, { valid: true });
      assert.deepEqual((await c.get(`${VALIDITY}?token=wrong`)).body, { valid: false });
      assert.deepEqual((await c.get(`${VALIDITY}?token=expired`)).body, { valid: false });
      const missing = await c.get(VALIDITY);
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
    });

    it('registers with a valid token and counts its uses', async () => {
      const c = server.client();
      assert.deepEqual((await c.get(`${VALIDITY}?token=single-use`)).body, { valid: true });
      const first = await c.post(REGISTER, { username: 'tok2', password: 'pw' });
      const res = await c.post(REGISTER, {
        username: 'tok2',
        password: 'pw',
        auth: { type: 'm.login.registration_token', token: 'single-use', session: first.body.session },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.user_id, '@tok2:test.local');
      assert.equal((await tokenRow('single-use')).completed, 1);

      // Used up: no longer valid, and a second registration with it fails.
      assert.deepEqual((await c.get(`${VALIDITY}?token=single-use`)).body, { valid: false });
      const again1 = await c.post(REGISTER, { username: 'tok3', password: 'pw' });
      const again = await c.post(REGISTER, {
        username: 'tok3',
        password: 'pw',
        auth: { type: 'm.login.registration_token', token: 'single-use', session: again1.body.session },
      });
      assert.equal(again.status, 401);
      assert.equal(again.body.errcode, 'M_UNAUTHORIZED');

      // An unlimited token counts every use.
      for (const name of ['tok4', 'tok5']) {
        const f = await c.post(REGISTER, { username: name, password: 'pw' });
        const r = await c.post(REGISTER, {
          username: name,
          password: 'pw',
          auth: { type: 'm.login.registration_token', token: 'many', session: f.body.session },
        });
        assert.equal(r.status, 200);
      }
      assert.equal((await tokenRow('many')).completed, 2);
    });
  });
}
