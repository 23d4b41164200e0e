/**
 * GET /_matrix/client/versions advertises the spec versions Hearth serves (v1.1-v1.13), and what v1.12 added that
 * a server must do: account locking answers 401 M_USER_LOCKED with soft_logout on every endpoint but logout.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string; deviceId: string };

const PASSWORD = 'correct horse battery staple';

function login(server: TestServer, user: string) {
  return server.client().post('/_matrix/client/v3/login', {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user },
    password: PASSWORD,
  });
}

for (const engine of ENGINES) {
  describe(`${engine}: /versions and what the listed versions require`, () => {
    let server: TestServer;
    let admin: User;

    before(async () => {
      server = await startTestServer(engine);
      admin = await server.user('admin', { admin: true });
    });
    after(() => server.close());

    it('lists v1.1 to v1.18, and no version whose endpoints are missing', async () => {
      const res = await server.client().get('/_matrix/client/versions');
      assert.equal(res.status, 200);
      const expected = Array.from({ length: 18 }, (_, i) => `v1.${i + 1}`);
      assert.deepEqual(res.body.versions, expected);
      assert.equal(
        (res.body.unstable_features as Record<string, unknown>)['org.matrix.simplified_msc3575'],
        true,
      );
      // What v1.14 to v1.18 add is served (test/client-compat/).
      const report = await admin.post(`/_matrix/client/v3/users/${encodeURIComponent(admin.userId)}/report`, {
        reason: 'x',
      });
      assert.equal(report.status, 200);
    });

    it('a locked account gets 401 M_USER_LOCKED with soft_logout everywhere but logout (v1.12)', async () => {
      const carol = await server.user('carol', { password: PASSWORD });
      const secondLogin = await login(server, 'carol');
      assert.equal(secondLogin.status, 200);
      const second = server.client(secondLogin.body.access_token as string);
      const path = `/_synapse/admin/v2/users/${encodeURIComponent(carol.userId)}`;
      assert.equal((await admin.put(path, { locked: true })).status, 200);

      for (const res of [
        await carol.get('/_matrix/client/v3/account/whoami'),
        await carol.get('/_matrix/client/v3/sync?timeout=0'),
        await carol.post('/_matrix/client/v3/createRoom', {}),
      ]) {
        assert.equal(res.status, 401, JSON.stringify(res.body));
        assert.equal(res.body.errcode, 'M_USER_LOCKED');
        assert.equal(res.body.soft_logout, true);
      }
      const locked = await login(server, 'carol');
      assert.equal(locked.status, 401);
      assert.equal(locked.body.errcode, 'M_USER_LOCKED');
      assert.equal(locked.body.soft_logout, true);
      // Logging out still works, and the token is gone afterwards.
      assert.equal((await carol.post('/_matrix/client/v3/logout', {})).status, 200);
      const gone = await carol.get('/_matrix/client/v3/account/whoami');
      assert.equal(gone.body.errcode, 'M_UNKNOWN_TOKEN');
      assert.equal((await second.post('/_matrix/client/v3/logout/all', {})).status, 200);

      assert.equal((await admin.put(path, { locked: false })).status, 200);
      const again = await login(server, 'carol');
      assert.equal(again.status, 200);
      const whoami = await server
        .client(again.body.access_token as string)
        .get('/_matrix/client/v3/account/whoami');
      assert.equal(whoami.body.user_id, carol.userId);
      // Other users are unaffected throughout.
      assert.equal((await admin.get('/_matrix/client/v3/account/whoami')).status, 200);
    });
  });
}
