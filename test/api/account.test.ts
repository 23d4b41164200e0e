import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { getUser } from '../../src/storage/users.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const LOGIN = '/_matrix/client/v3/login';
const WHOAMI = '/_matrix/client/v3/account/whoami';
const CHANGE = '/_matrix/client/v3/account/password';
const DEACTIVATE = '/_matrix/client/v3/account/deactivate';

for (const engine of ENGINES) {
  describe(`${engine}: account management`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    const login = (user: string, password: string) =>
      server
        .client()
        .post(LOGIN, { type: 'm.login.password', identifier: { type: 'm.id.user', user }, password });

    /** Logs in again; returns a client holding the new token. */
    const session = async (user: string, password: string) => {
      const res = await login(user, password);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return Object.assign(server.client(res.body.access_token as string), {
        deviceId: res.body.device_id as string,
      });
    };

    /** Runs a request through password UIA: 401 first, then with the password. */
    const withPasswordUia = async (
      c: ReturnType<typeof server.client>,
      path: string,
      body: Record<string, unknown>,
      user: string,
      password: string,
    ) => {
      const first = await c.post(path, body);
      assert.equal(first.status, 401);
      assert.deepEqual(first.body.flows, [{ stages: ['m.login.password'] }]);
      return c.post(path, {
        ...body,
        auth: {
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user },
          password,
          session: first.body.session,
        },
      });
    };

    it('changes the password and logs out the other devices by default', async () => {
      const current = await server.user('erin', { password: 'old-pw' });
      const other = await session('erin', 'old-pw');

      const wrong = await withPasswordUia(current, CHANGE, { new_password: 'new-pw' }, 'erin', 'not-it');
      assert.equal(wrong.status, 401);
      assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
      assert.equal((await login('erin', 'old-pw')).status, 200);

      const res = await withPasswordUia(current, CHANGE, { new_password: 'new-pw' }, 'erin', 'old-pw');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, {});

      const oldLogin = await login('erin', 'old-pw');
      assert.equal(oldLogin.status, 403);
      assert.equal(oldLogin.body.errcode, 'M_FORBIDDEN');
      assert.equal((await login('erin', 'new-pw')).status, 200);

      assert.equal((await current.get(WHOAMI)).status, 200);
      const gone = await other.get(WHOAMI);
      assert.equal(gone.status, 401);
      assert.equal(gone.body.errcode, 'M_UNKNOWN_TOKEN');
      const ids = (
        (await current.get('/_matrix/client/v3/devices')).body.devices as { device_id: string }[]
      ).map((d) => d.device_id);
      assert.ok(ids.includes(current.deviceId));
      assert.ok(!ids.includes(other.deviceId));
    });

    it('keeps the other devices with logout_devices: false', async () => {
      const current = await server.user('fay', { password: 'old-pw' });
      const other = await session('fay', 'old-pw');
      const res = await withPasswordUia(
        current,
        CHANGE,
        { new_password: 'new-pw', logout_devices: false },
        'fay',
        'old-pw',
      );
      assert.equal(res.status, 200);
      assert.equal((await other.get(WHOAMI)).status, 200);
      assert.equal((await current.get(WHOAMI)).status, 200);
      assert.equal((await login('fay', 'old-pw')).status, 403);
      assert.equal((await login('fay', 'new-pw')).status, 200);
    });

    it('needs new_password', async () => {
      const c = await session('fay', 'new-pw');
      const res = await c.post(CHANGE, {});
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_MISSING_PARAM');
    });

    it('deactivates an account after UIA: tokens die and login is refused', async () => {
      const gus = await server.user('gus', { password: 'gus-pw' });
      const other = await session('gus', 'gus-pw');

      const first = await gus.post(DEACTIVATE, {});
      assert.equal(first.status, 401);
      assert.equal((await gus.get(WHOAMI)).status, 200);
      assert.equal((await getUser(server.hs.storage.db, '@gus:test.local'))?.deactivated, 0);

      const res = await withPasswordUia(gus, DEACTIVATE, {}, 'gus', 'gus-pw');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.id_server_unbind_result, 'no-support');

      for (const c of [gus, other]) {
        const r = await c.get(WHOAMI);
        assert.equal(r.status, 401);
        assert.equal(r.body.errcode, 'M_UNKNOWN_TOKEN');
      }
      const again = await login('gus', 'gus-pw');
      assert.equal(again.status, 403);
      assert.equal(again.body.errcode, 'M_USER_DEACTIVATED');
      // The user id stays taken.
      const avail = await server.client().get('/_matrix/client/v3/register/available?username=gus');
      assert.equal(avail.body.errcode, 'M_USER_IN_USE');
      assert.equal((await getUser(server.hs.storage.db, '@gus:test.local'))?.deactivated, 1);
    });

    it('lists no third-party identifiers', async () => {
      const c = await session('fay', 'new-pw');
      const res = await c.get('/_matrix/client/v3/account/3pid');
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { threepids: [] });
      const anon = await server.client().get('/_matrix/client/v3/account/3pid');
      assert.equal(anon.status, 401);
      assert.equal(anon.body.errcode, 'M_MISSING_TOKEN');
    });
  });
}
