/**
 * OpenID: POST /user/{userId}/openid/request_token and GET /_matrix/federation/v1/openid/userinfo (integration
 * managers and widgets), on every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hashToken } from '../../src/accounts/secrets.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const USERINFO = '/_matrix/federation/v1/openid/userinfo';
const requestPath = (userId: string) =>
  `/_matrix/client/v3/user/${encodeURIComponent(userId)}/openid/request_token`;

for (const engine of ENGINES) {
  describe(`${engine}: OpenID tokens`, () => {
    let server: TestServer;
    before(async () => {
      // userinfo is a federation endpoint: one plain-HTTP listener serves both resources.
      server = await startTestServer(engine, {
        listeners: [
          { port: 0, bind_addresses: ['127.0.0.1'], resources: [{ names: ['client', 'federation'] }] },
        ],
      });
    });
    after(() => server.close());

    it('issues a Bearer token that userinfo exchanges for the user id', async () => {
      const alice = await server.user('o_alice');
      const res = await alice.post(requestPath(alice.userId), {});
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.token_type, 'Bearer');
      assert.equal(res.body.matrix_server_name, 'test.local');
      assert.equal(res.body.expires_in, 3600);
      const token = res.body.access_token as string;
      assert.equal(typeof token, 'string');
      assert.ok(token.length >= 32);

      const info = await server.client().get(`${USERINFO}?access_token=${encodeURIComponent(token)}`);
      assert.equal(info.status, 200, JSON.stringify(info.body));
      assert.deepEqual(info.body, { sub: alice.userId });

      // Stored hashed, with its expiry.
      const row = await server.hs.storage.db
        .selectFrom('openid_tokens')
        .selectAll()
        .where('user_id', '=', alice.userId)
        .executeTakeFirstOrThrow();
      assert.equal(row.token_hash, hashToken(token));
      assert.ok(Math.abs(Number(row.expires_ts) - (Date.now() + 3600_000)) < 60_000);
    });

    it('refuses tokens for another user, without a login, and a body that is not an object', async () => {
      const alice = await server.user('o_bob');
      const other = await alice.post(requestPath('@someone:test.local'), {});
      assert.equal(other.status, 403);
      assert.equal(other.body.errcode, 'M_FORBIDDEN');
      const anon = await server.client().post(requestPath(alice.userId), {});
      assert.equal(anon.status, 401);
      assert.equal(anon.body.errcode, 'M_MISSING_TOKEN');
      const notObject = await alice.request('POST', requestPath(alice.userId), undefined, { raw: '[1]' });
      assert.equal(notObject.status, 400);
    });

    it('answers userinfo 401 for a missing, unknown or expired token, and does not take an access token', async () => {
      const carol = await server.user('o_carol');
      const missing = await server.client().get(USERINFO);
      assert.equal(missing.status, 401);
      assert.equal(missing.body.errcode, 'M_MISSING_TOKEN');
      const unknown = await server.client().get(`${USERINFO}?access_token=nope`);
      assert.equal(unknown.status, 401);
      assert.equal(unknown.body.errcode, 'M_UNKNOWN_TOKEN');
      // The client access token is not an OpenID token.
      const access = await server
        .client()
        .get(`${USERINFO}?access_token=${encodeURIComponent(carol.token ?? '')}`);
      assert.equal(access.status, 401);
      assert.equal(access.body.errcode, 'M_UNKNOWN_TOKEN');

      const res = await carol.post(requestPath(carol.userId), {});
      const token = res.body.access_token as string;
      await server.hs.storage.db
        .updateTable('openid_tokens')
        .set({ expires_ts: Date.now() - 1 })
        .where('token_hash', '=', hashToken(token))
        .execute();
      const expired = await server.client().get(`${USERINFO}?access_token=${encodeURIComponent(token)}`);
      assert.equal(expired.status, 401);
      assert.equal(expired.body.errcode, 'M_UNKNOWN_TOKEN');
    });
  });
}
