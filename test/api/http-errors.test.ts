import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

for (const engine of ENGINES) {
  describe(`${engine}: HTTP error model`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, { max_json_body_size: 4096 });
    });
    after(() => server.close());

    it('answers an unknown endpoint with 404 M_UNRECOGNIZED', async () => {
      const res = await server.client().get('/_matrix/client/v3/no/such/thing');
      assert.equal(res.status, 404);
      assert.equal(res.body.errcode, 'M_UNRECOGNIZED');
      assert.equal(typeof res.body.error, 'string');
    });

    it('answers a wrong method with 405 M_UNRECOGNIZED', async () => {
      const res = await server.client().request('DELETE', '/_matrix/client/v3/login');
      assert.equal(res.status, 405);
      assert.equal(res.body.errcode, 'M_UNRECOGNIZED');
    });

    it('answers a body that is not JSON with 400 M_NOT_JSON', async () => {
      const res = await server
        .client()
        .request('POST', '/_matrix/client/v3/login', undefined, { raw: '{nope' });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_NOT_JSON');
    });

    it('answers a JSON array body with 400 M_NOT_JSON', async () => {
      const res = await server
        .client()
        .request('POST', '/_matrix/client/v3/login', undefined, { raw: '[1,2]' });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_NOT_JSON');
    });

    it('names a missing field with M_MISSING_PARAM', async () => {
      const res = await server.client().post('/_matrix/client/v3/login', {});
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_MISSING_PARAM');
      assert.match(res.body.error as string, /type/);
    });

    it('names a field of the wrong type with M_BAD_JSON', async () => {
      const res = await server
        .client()
        .post('/_matrix/client/v3/login', { type: 'm.login.password', password: 5 });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      assert.match(res.body.error as string, /password/);
    });

    it('answers a body over the limit with 413 M_TOO_LARGE', async () => {
      const res = await server
        .client()
        .post('/_matrix/client/v3/login', { type: 'x', pad: 'a'.repeat(10_000) });
      assert.equal(res.status, 413);
      assert.equal(res.body.errcode, 'M_TOO_LARGE');
    });

    it('answers CORS preflight and sets CORS headers on every response', async () => {
      const res = await fetch(`${server.url}/_matrix/client/v3/sync`, { method: 'OPTIONS' });
      assert.ok(res.status === 200 || res.status === 204);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      assert.match(res.headers.get('access-control-allow-headers') ?? '', /Authorization/);
      const get = await server.client().get('/_matrix/client/versions');
      assert.equal(get.headers.get('access-control-allow-origin'), '*');
      assert.match(get.headers.get('access-control-allow-methods') ?? '', /PUT/);
    });

    it('requires a token with 401 M_MISSING_TOKEN and rejects unknown ones with M_UNKNOWN_TOKEN', async () => {
      const missing = await server.client().get('/_matrix/client/v3/account/whoami');
      assert.equal(missing.status, 401);
      assert.equal(missing.body.errcode, 'M_MISSING_TOKEN');
      const unknown = await server.client('hat_bogus').get('/_matrix/client/v3/account/whoami');
      assert.equal(unknown.status, 401);
      assert.equal(unknown.body.errcode, 'M_UNKNOWN_TOKEN');
      assert.equal(unknown.body.soft_logout, false);
    });

    it('rejects access tokens in the query string', async () => {
      const alice = await server.user('qsuser');
      const res = await server.client().get(`/_matrix/client/v3/account/whoami?access_token=${alice.token}`);
      assert.equal(res.status, 401);
      assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
    });

    it('serves /versions with v1.1 and later, and the well-known documents', async () => {
      const res = await server.client().get('/_matrix/client/versions');
      assert.equal(res.status, 200);
      const versions = res.body.versions as string[];
      assert.ok(versions.includes('v1.1'));
      assert.ok(versions.includes('v1.11'));
      const wk = await server.client().get('/.well-known/matrix/client');
      assert.equal(typeof (wk.body['m.homeserver'] as { base_url: string }).base_url, 'string');
      const wks = await server.client().get('/.well-known/matrix/server');
      assert.equal(wks.body['m.server'], 'test.local:443');
    });
  });
}
