import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createAccount } from '../../src/accounts/register.js';
import { markDeactivated } from '../../src/storage/users.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const LOGIN = '/_matrix/client/v3/login';
const REFRESH = '/_matrix/client/v3/refresh';
const WHOAMI = '/_matrix/client/v3/account/whoami';
const DEVICES = '/_matrix/client/v3/devices';
const TOKEN_LIFETIME_MS = 1500;

const password = (user: string) => `pw-${user}`;

for (const engine of ENGINES) {
  describe(`${engine}: login, refresh, logout and whoami`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, {
        access_token_lifetime_ms: TOKEN_LIFETIME_MS,
        public_baseurl: 'https://matrix.test.local/',
      });
      for (const u of ['alice', 'bob', 'carol', 'dan', 'erin']) {
        await createAccount(server.hs.storage.db, {
          localpart: u,
          serverName: server.serverName,
          password: password(u),
        });
      }
    });
    after(() => server.close());

    const login = (user: string, extra: Record<string, unknown> = {}) =>
      server.client().post(LOGIN, {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user },
        password: password(user.replace(/^@/, '').replace(/:.*$/, '').toLowerCase()),
        ...extra,
      });

    it('offers m.login.password in GET /login', async () => {
      const res = await server.client().get(LOGIN);
      assert.equal(res.status, 200);
      const flows = res.body.flows as { type: string }[];
      assert.ok(flows.some((f) => f.type === 'm.login.password'));
    });

    it('logs in with an m.id.user localpart and returns the full response', async () => {
      const res = await login('alice');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.user_id, '@alice:test.local');
      assert.equal(typeof res.body.access_token, 'string');
      assert.equal(typeof res.body.device_id, 'string');
      assert.equal(res.body.home_server, 'test.local');
      assert.deepEqual(res.body.well_known, { 'm.homeserver': { base_url: 'https://matrix.test.local/' } });
      // Without refresh_token: true the token does not expire.
      assert.equal(res.body.refresh_token, undefined);
      assert.equal(res.body.expires_in_ms, undefined);

      const me = await server.client(res.body.access_token as string).get(WHOAMI);
      assert.equal(me.status, 200);
      assert.deepEqual(me.body, {
        user_id: '@alice:test.local',
        device_id: res.body.device_id,
        is_guest: false,
      });
    });

    it('logs in with a full user id, and case-insensitively', async () => {
      for (const user of ['@alice:test.local', 'ALICE', '@Alice:test.local']) {
        const res = await login(user);
        assert.equal(res.status, 200, `${user}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.user_id, '@alice:test.local');
      }
    });

    it('accepts the legacy top-level user field', async () => {
      const res = await server
        .client()
        .post(LOGIN, { type: 'm.login.password', user: 'alice', password: password('alice') });
      assert.equal(res.status, 200);
      assert.equal(res.body.user_id, '@alice:test.local');
    });

    it('rejects a wrong password or an unknown user with 403 M_FORBIDDEN', async () => {
      const wrong = await login('alice', { password: 'nope' });
      assert.equal(wrong.status, 403);
      assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
      assert.equal(wrong.body.access_token, undefined);
      const unknown = await login('nosuchuser');
      assert.equal(unknown.status, 403);
      assert.equal(unknown.body.errcode, 'M_FORBIDDEN');
      const otherServer = await login('@alice:elsewhere.test', { password: password('alice') });
      assert.equal(otherServer.status, 403);
      assert.equal(otherServer.body.errcode, 'M_FORBIDDEN');
    });

    it('rejects unknown login types and identifier types with 400', async () => {
      const res = await server.client().post(LOGIN, { type: 'm.login.bogus', user: 'alice', password: 'x' });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_UNKNOWN');
      const tp = await server.client().post(LOGIN, {
        type: 'm.login.password',
        identifier: { type: 'm.id.thirdparty', medium: 'email', address: 'a@b.c' },
        password: 'x',
      });
      assert.equal(tp.status, 400);
      const nopw = await server
        .client()
        .post(LOGIN, { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' } });
      assert.equal(nopw.status, 400);
      assert.equal(nopw.body.errcode, 'M_MISSING_PARAM');
    });

    it('refuses a deactivated user with 403 M_USER_DEACTIVATED', async () => {
      await markDeactivated(server.hs.storage.db, '@carol:test.local');
      const res = await login('carol');
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_USER_DEACTIVATED');
    });

    it('replaces the old token when logging in again with the same device_id', async () => {
      const first = await login('bob', { device_id: 'BOBPHONE', initial_device_display_name: 'Phone' });
      assert.equal(first.status, 200);
      assert.equal(first.body.device_id, 'BOBPHONE');
      const second = await login('bob', { device_id: 'BOBPHONE' });
      assert.equal(second.status, 200);
      assert.equal(second.body.device_id, 'BOBPHONE');
      assert.notEqual(second.body.access_token, first.body.access_token);

      const old = await server.client(first.body.access_token as string).get(WHOAMI);
      assert.equal(old.status, 401);
      assert.equal(old.body.errcode, 'M_UNKNOWN_TOKEN');
      const bob = server.client(second.body.access_token as string);
      const me = await bob.get(WHOAMI);
      assert.equal(me.body.device_id, 'BOBPHONE');
      const devices = (await bob.get(DEVICES)).body.devices as { device_id: string; display_name?: string }[];
      const phones = devices.filter((d) => d.device_id === 'BOBPHONE');
      assert.equal(phones.length, 1);
      // The display name given at first login is kept when none is given the second time.
      assert.equal(phones[0]?.display_name, 'Phone');
    });

    it('issues refresh tokens and rotates them on /refresh', async () => {
      const res = await login('dan', { refresh_token: true });
      assert.equal(res.status, 200);
      assert.equal(typeof res.body.refresh_token, 'string');
      assert.equal(res.body.expires_in_ms, TOKEN_LIFETIME_MS);
      const deviceId = res.body.device_id;

      const refreshed = await server.client().post(REFRESH, { refresh_token: res.body.refresh_token });
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.equal(typeof refreshed.body.access_token, 'string');
      assert.equal(typeof refreshed.body.refresh_token, 'string');
      assert.equal(refreshed.body.expires_in_ms, TOKEN_LIFETIME_MS);
      assert.notEqual(refreshed.body.access_token, res.body.access_token);
      assert.notEqual(refreshed.body.refresh_token, res.body.refresh_token);

      const me = await server.client(refreshed.body.access_token as string).get(WHOAMI);
      assert.equal(me.status, 200);
      assert.equal(me.body.user_id, '@dan:test.local');
      assert.equal(me.body.device_id, deviceId);

      const reuse = await server.client().post(REFRESH, { refresh_token: res.body.refresh_token });
      assert.equal(reuse.status, 401);
      assert.equal(reuse.body.errcode, 'M_UNKNOWN_TOKEN');
      const bogus = await server.client().post(REFRESH, { refresh_token: 'hrt_bogus' });
      assert.equal(bogus.status, 401);
      assert.equal(bogus.body.errcode, 'M_UNKNOWN_TOKEN');
    });

    it('answers an expired access token with 401 M_UNKNOWN_TOKEN and soft_logout', async () => {
      const res = await login('dan', { refresh_token: true });
      const c = server.client(res.body.access_token as string);
      assert.equal((await c.get(WHOAMI)).status, 200);
      await sleep(TOKEN_LIFETIME_MS + 100);
      const expired = await c.get(WHOAMI);
      assert.equal(expired.status, 401);
      assert.equal(expired.body.errcode, 'M_UNKNOWN_TOKEN');
      assert.equal(expired.body.soft_logout, true);
      // The refresh token still gets a working access token for the same device.
      const refreshed = await server.client().post(REFRESH, { refresh_token: res.body.refresh_token });
      assert.equal(refreshed.status, 200);
      const me = await server.client(refreshed.body.access_token as string).get(WHOAMI);
      assert.equal(me.status, 200);
      assert.equal(me.body.device_id, res.body.device_id);
    });

    it('logs out one session: its token stops working and its device disappears', async () => {
      const a = await login('erin');
      const b = await login('erin');
      const ca = server.client(a.body.access_token as string);
      const cb = server.client(b.body.access_token as string);
      const before = (await cb.get(DEVICES)).body.devices as { device_id: string }[];
      assert.ok(before.some((d) => d.device_id === a.body.device_id));

      const out = await ca.post('/_matrix/client/v3/logout');
      assert.equal(out.status, 200);
      assert.deepEqual(out.body, {});
      const gone = await ca.get(WHOAMI);
      assert.equal(gone.status, 401);
      assert.equal(gone.body.errcode, 'M_UNKNOWN_TOKEN');

      assert.equal((await cb.get(WHOAMI)).status, 200);
      const after = (await cb.get(DEVICES)).body.devices as { device_id: string }[];
      assert.ok(!after.some((d) => d.device_id === a.body.device_id));
      assert.ok(after.some((d) => d.device_id === b.body.device_id));
    });

    it('logs out every session with /logout/all', async () => {
      const a = await login('erin');
      const b = await login('erin', { refresh_token: true });
      const out = await server.client(a.body.access_token as string).post('/_matrix/client/v3/logout/all');
      assert.equal(out.status, 200);
      for (const token of [a.body.access_token, b.body.access_token]) {
        const res = await server.client(token as string).get(WHOAMI);
        assert.equal(res.status, 401);
        assert.equal(res.body.errcode, 'M_UNKNOWN_TOKEN');
      }
      const refresh = await server.client().post(REFRESH, { refresh_token: b.body.refresh_token });
      assert.equal(refresh.status, 401);
      // Logging in again works and starts from no devices.
      const c = await login('erin');
      assert.equal(c.status, 200);
      const devices = (await server.client(c.body.access_token as string).get(DEVICES)).body
        .devices as unknown[];
      assert.equal(devices.length, 1);
    });

    it('requires a token for logout and whoami', async () => {
      for (const [method, path] of [
        ['POST', '/_matrix/client/v3/logout'],
        ['POST', '/_matrix/client/v3/logout/all'],
        ['GET', WHOAMI],
      ] as const) {
        const res = await server.client().request(method, path, method === 'POST' ? {} : undefined);
        assert.equal(res.status, 401, path);
        assert.equal(res.body.errcode, 'M_MISSING_TOKEN', path);
      }
    });
  });
}
