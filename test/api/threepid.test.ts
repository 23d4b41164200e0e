/**
 * Third-party identifier endpoints on a server without email or SMS: they exist (no 404), validate their bodies and
 * answer the spec's errors, on every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

const V3 = '/_matrix/client/v3';
const email = { client_secret: 'monkeys_are_GREAT', email: 'alice@example.org', send_attempt: 1 };
const msisdn = {
  client_secret: 'monkeys_are_GREAT',
  country: 'GB',
  phone_number: '07700900001',
  send_attempt: 1,
};

for (const engine of ENGINES) {
  describe(`${engine}: 3PID endpoints without email or SMS`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    before(async () => {
      server = await startTestServer(engine, { enable_registration: true });
      alice = await server.user('t_alice', { password: 'pw' });
    });
    after(() => server.close());

    it('answers requestToken with the error the spec lists for each endpoint', async () => {
      const c = server.client();
      const cases: [string, Json, number, string][] = [
        [`${V3}/account/3pid/email/requestToken`, email, 400, 'M_THREEPID_MEDIUM_NOT_SUPPORTED'],
        [`${V3}/account/3pid/msisdn/requestToken`, msisdn, 400, 'M_THREEPID_MEDIUM_NOT_SUPPORTED'],
        [`${V3}/register/email/requestToken`, email, 403, 'M_THREEPID_DENIED'],
        [`${V3}/register/msisdn/requestToken`, msisdn, 403, 'M_THREEPID_DENIED'],
        [`${V3}/account/password/email/requestToken`, email, 403, 'M_THREEPID_DENIED'],
        [`${V3}/account/password/msisdn/requestToken`, msisdn, 403, 'M_THREEPID_DENIED'],
      ];
      for (const [path, body, status, errcode] of cases) {
        const res = await c.post(path, body);
        assert.equal(res.status, status, `${path}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, errcode, path);
        assert.equal(typeof res.body.error, 'string', path);
      }
    });

    it('validates requestToken bodies before anything else', async () => {
      const c = server.client();
      for (const kind of ['email', 'msisdn'] as const) {
        const body = kind === 'email' ? email : msisdn;
        for (const prefix of ['account/3pid', 'register', 'account/password']) {
          const path = `${V3}/${prefix}/${kind}/requestToken`;
          const { client_secret: _, ...noSecret } = body;
          let res = await c.post(path, noSecret);
          assert.equal(res.status, 400, path);
          assert.equal(res.body.errcode, 'M_MISSING_PARAM', path);
          assert.match(res.body.error as string, /client_secret/);
          res = await c.post(path, { ...body, send_attempt: 'one' });
          assert.equal(res.body.errcode, 'M_BAD_JSON', path);
          res = await c.post(path, { ...body, client_secret: 'not secret!' });
          assert.equal(res.body.errcode, 'M_INVALID_PARAM', path);
          res = await c.post(path, { ...body, client_secret: 'x'.repeat(256) });
          assert.equal(res.body.errcode, 'M_INVALID_PARAM', path);
        }
      }
    });

    it('answers 403 M_FORBIDDEN for registration tokens when registration is disabled', async () => {
      const closed = await startTestServer(engine);
      try {
        const res = await closed.client().post(`${V3}/register/email/requestToken`, email);
        assert.equal(res.status, 403);
        assert.equal(res.body.errcode, 'M_FORBIDDEN');
      } finally {
        await closed.close();
      }
    });

    it('lists no 3PIDs, and deletes or unbinds nothing with no-support', async () => {
      assert.deepEqual((await alice.get(`${V3}/account/3pid`)).body, { threepids: [] });
      for (const action of ['delete', 'unbind']) {
        const path = `${V3}/account/3pid/${action}`;
        let res = await alice.post(path, { medium: 'email', address: 'alice@example.org' });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.deepEqual(res.body, { id_server_unbind_result: 'no-support' });
        res = await alice.post(path, {
          medium: 'email',
          address: 'a@example.org',
          id_server: 'id.example.org',
        });
        assert.deepEqual(res.body, { id_server_unbind_result: 'no-support' });
        res = await alice.post(path, { medium: 'fax', address: '1234' });
        assert.equal(res.status, 400, action);
        assert.equal(res.body.errcode, 'M_BAD_JSON');
        res = await alice.post(path, { medium: 'email' });
        assert.equal(res.body.errcode, 'M_MISSING_PARAM');
        res = await server.client().post(path, { medium: 'email', address: 'alice@example.org' });
        assert.equal(res.status, 401);
      }
    });

    it('cannot add or bind a 3PID: no validation session exists and no identity server is contacted', async () => {
      const creds = { client_secret: 'd0nt-T3ll', sid: 'abc123987' };
      let res = await alice.post(`${V3}/account/3pid`, { three_pid_creds: { ...creds, id_server: 'x.org' } });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_THREEPID_AUTH_FAILED');
      res = await alice.post(`${V3}/account/3pid`, { threePidCreds: creds });
      assert.equal(res.body.errcode, 'M_THREEPID_AUTH_FAILED');
      res = await alice.post(`${V3}/account/3pid`, {});
      assert.equal(res.body.errcode, 'M_MISSING_PARAM');
      res = await alice.post(`${V3}/account/3pid`, { three_pid_creds: { client_secret: 'a' } });
      assert.equal(res.body.errcode, 'M_MISSING_PARAM');

      // /add asks for user-interactive auth first, then finds no validated session.
      res = await alice.post(`${V3}/account/3pid/add`, creds);
      assert.equal(res.status, 401);
      const auth = {
        type: 'm.login.password',
        session: res.body.session,
        identifier: { type: 'm.id.user', user: 't_alice' },
        password: 'pw',
      };
      res = await alice.post(`${V3}/account/3pid/add`, { ...creds, auth });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_THREEPID_AUTH_FAILED');
      res = await alice.post(`${V3}/account/3pid/add`, { sid: 'x' });
      assert.equal(res.body.errcode, 'M_MISSING_PARAM');

      res = await alice.post(`${V3}/account/3pid/bind`, {
        ...creds,
        id_server: 'id.example.org',
        id_access_token: 'abc',
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_SERVER_NOT_TRUSTED');
      res = await alice.post(`${V3}/account/3pid/bind`, creds);
      assert.equal(res.body.errcode, 'M_MISSING_PARAM');
      assert.deepEqual((await alice.get(`${V3}/account/3pid`)).body, { threepids: [] });
    });
  });
}
