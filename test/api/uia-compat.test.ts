/**
 * User-interactive auth as SyTest checks it (tests/11register.pl): a session remembers the parameters of the
 * request that started it, and a completed session can be retried for the same request (the spec: the server
 * returns the result of the API call), on every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createRegistrationToken } from '../../src/storage/registration-tokens.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const REGISTER = '/_matrix/client/v3/register';
const LOGIN = '/_matrix/client/v3/login';
const WHOAMI = '/_matrix/client/v3/account/whoami';

for (const engine of ENGINES) {
  describe(`${engine}: UIA sessions keep their parameters and can be retried`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, { enable_registration: true });
    });
    after(() => server.close());

    const login = (user: string, password: string) =>
      server.client().post(LOGIN, {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user },
        password,
      });

    it('registration remembers the parameters of the first request (SyTest "registration remembers parameters")', async () => {
      const c = server.client();
      const first = await c.post(REGISTER, {
        username: 'remembered',
        password: 'sUp3rs3kr1t',
        device_id: 'xyzzy',
        initial_device_display_name: 'display_name',
      });
      assert.equal(first.status, 401);
      const session = first.body.session as string;

      // The password is kept only as a hash, the other parameters as they were sent.
      const row = await server.hs.storage.db
        .selectFrom('uia_sessions')
        .selectAll()
        .where('session_id', '=', session)
        .executeTakeFirstOrThrow();
      assert.deepEqual(JSON.parse(row.params), {
        username: 'remembered',
        device_id: 'xyzzy',
        initial_device_display_name: 'display_name',
      });
      assert.ok(!row.params.includes('sUp3rs3kr1t') && !row.data.includes('sUp3rs3kr1t'));
      assert.equal(typeof (JSON.parse(row.data) as Record<string, unknown>).password_hash, 'string');

      const second = await c.post(REGISTER, { auth: { session, type: 'm.login.dummy' } });
      assert.equal(second.status, 200, JSON.stringify(second.body));
      assert.equal(second.body.user_id, '@remembered:test.local');
      assert.equal(second.body.device_id, 'xyzzy');
      const me = server.client(second.body.access_token as string);
      assert.equal((await me.get(WHOAMI)).body.device_id, 'xyzzy');
      const device = await me.get('/_matrix/client/v3/devices/xyzzy');
      assert.equal(device.body.display_name, 'display_name');
      // The remembered password is the account's password.
      assert.equal((await login('remembered', 'sUp3rs3kr1t')).status, 200);
    });

    it('a completed registration session answers again with the same user (without a username)', async () => {
      const c = server.client();
      const first = await c.post(REGISTER, { password: 'sUp3rs3kr1t' });
      assert.equal(first.status, 401);
      const body = { password: 'sUp3rs3kr1t', auth: { session: first.body.session, type: 'm.login.dummy' } };
      const done = await c.post(REGISTER, body);
      assert.equal(done.status, 200, JSON.stringify(done.body));
      const again = await c.post(REGISTER, body);
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.body.user_id, done.body.user_id);
      assert.equal(typeof again.body.access_token, 'string');
      assert.notEqual(again.body.access_token, done.body.access_token);
      const me = await server.client(again.body.access_token as string).get(WHOAMI);
      assert.equal(me.body.user_id, done.body.user_id);
      // Only one account was made.
      const users = await server.hs.storage.db
        .selectFrom('users')
        .select('user_id')
        .where('user_id', '=', done.body.user_id as string)
        .execute();
      assert.equal(users.length, 1);
    });

    it('a completed registration session answers again with the same user (with a username)', async () => {
      const c = server.client();
      const body = { username: 'idem', password: 'sUp3rs3kr1t' };
      const first = await c.post(REGISTER, body);
      const auth = { session: first.body.session, type: 'm.login.dummy' };
      const done = await c.post(REGISTER, { ...body, auth });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      // The name is taken now, but not for the session that took it.
      const again = await c.post(REGISTER, { ...body, auth });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.body.user_id, '@idem:test.local');
      // Without the session the name is taken; with another name the session refuses.
      const taken = await c.post(REGISTER, body);
      assert.equal(taken.body.errcode, 'M_USER_IN_USE');
      const other = await c.post(REGISTER, { ...body, username: 'idem2', auth });
      assert.equal(other.status, 400);
      assert.equal((await c.get(`${REGISTER}/available?username=idem2`)).status, 200);
    });

    it('parameters sent in a later request of the session replace the stored ones, as in Synapse', async () => {
      const c = server.client();
      const first = await c.post(REGISTER, { username: 'first_name', password: 'pw1' });
      const auth = { session: first.body.session, type: 'm.login.dummy' };
      const res = await c.post(REGISTER, { username: 'second_name', password: 'pw2', auth });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.user_id, '@second_name:test.local');
      assert.equal((await login('second_name', 'pw2')).status, 200);
      assert.equal((await c.get(`${REGISTER}/available?username=first_name`)).status, 200);
    });

    it('does not keep oversized parameters with a session (unauthenticated storage)', async () => {
      const c = server.client();
      const first = await c.post(REGISTER, {
        username: 'bulky',
        password: 'pw',
        padding: 'x'.repeat(100_000),
      });
      assert.equal(first.status, 401);
      const row = await server.hs.storage.db
        .selectFrom('uia_sessions')
        .selectAll()
        .where('session_id', '=', first.body.session as string)
        .executeTakeFirstOrThrow();
      assert.equal(row.params, '{}');
      // The request that carries them is still performed with them.
      const done = await c.post(REGISTER, {
        username: 'bulky',
        password: 'pw',
        padding: 'x'.repeat(100_000),
        auth: { session: first.body.session, type: 'm.login.dummy' },
      });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal(done.body.user_id, '@bulky:test.local');
    });

    it('a completed session is retried for the same request, never for another, and never without auth', async () => {
      const user = await server.user('changer', { password: 'old-pw' });
      const path = '/_matrix/client/v3/account/password';
      const first = await user.post(path, { new_password: 'pw-1', logout_devices: false });
      assert.equal(first.status, 401);
      const session = first.body.session as string;
      const stage = {
        session,
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'changer' },
        password: 'old-pw',
      };
      const done = await user.post(path, { new_password: 'pw-1', logout_devices: false, auth: stage });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal((await login('changer', 'pw-1')).status, 200);

      // The session is complete: the same request with only the session id is performed again.
      const retried = await user.post(path, {
        new_password: 'pw-2',
        logout_devices: false,
        auth: { session },
      });
      assert.equal(retried.status, 200, JSON.stringify(retried.body));
      assert.equal((await login('changer', 'pw-2')).status, 200);
      assert.equal((await login('changer', 'pw-1')).status, 403);

      // Another operation cannot use it, and a request without auth is always asked to authenticate.
      const other = await user.post('/_matrix/client/v3/account/deactivate', { auth: { session } });
      assert.equal(other.status, 403);
      assert.equal(other.body.errcode, 'M_FORBIDDEN');
      const noAuth = await user.post(path, { new_password: 'pw-3', logout_devices: false });
      assert.equal(noAuth.status, 401);
      assert.notEqual(noAuth.body.session, session);
      assert.equal((await login('changer', 'pw-2')).status, 200);
    });
  });

  describe(`${engine}: token-authenticated registration replays`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, {
        enable_registration: true,
        registration_requires_token: true,
      });
      await createRegistrationToken(server.hs.storage.db, {
        token: 'once',
        usesAllowed: 1,
        expiryTime: null,
      });
    });
    after(() => server.close());

    it('counts the token once, and replays the completed registration without it', async () => {
      const c = server.client();
      const first = await c.post(REGISTER, { username: 'tokened', password: 'pw' });
      assert.equal(first.status, 401);
      const session = first.body.session as string;
      const done = await c.post(REGISTER, {
        auth: { session, type: 'm.login.registration_token', token: 'once' },
      });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal(done.body.user_id, '@tokened:test.local');
      const again = await c.post(REGISTER, { auth: { session } });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.body.user_id, '@tokened:test.local');
      const row = await server.hs.storage.db
        .selectFrom('registration_tokens')
        .selectAll()
        .where('token', '=', 'once')
        .executeTakeFirstOrThrow();
      assert.equal(row.completed, 1);
    });
  });
}
