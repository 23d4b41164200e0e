/**
 * The access-token cache (api/auth.ts): a token used once is answered from memory, and every way of revoking it
 * (logout, logout/all, device deletion, deactivation, locking, a new login on the same device id, a direct write
 * by any code path) is refused on the very next request, on both engines.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const WHOAMI = '/_matrix/client/v3/account/whoami';
const PASSWORD = 'token cache password';

for (const engine of ENGINES) {
  describe(`${engine}: access-token cache`, () => {
    let server: TestServer;
    let admin: Client;
    before(async () => {
      server = await startTestServer(engine);
      admin = await server.user('root', { admin: true });
    });
    after(() => server.close());

    const login = async (user: string, deviceId?: string) => {
      const res = await server.client().post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user },
        password: PASSWORD,
        ...(deviceId ? { device_id: deviceId } : {}),
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return {
        client: server.client(res.body.access_token as string),
        deviceId: res.body.device_id as string,
      };
    };

    /** Uses the token twice (the second answer comes from the cache). */
    const warm = async (c: Client) => {
      for (let i = 0; i < 2; i++) assert.equal((await c.get(WHOAMI)).status, 200);
    };

    const refused = async (c: Client, errcode = 'M_UNKNOWN_TOKEN') => {
      const res = await c.get(WHOAMI);
      assert.equal(res.status, 401, JSON.stringify(res.body));
      assert.equal(res.body.errcode, errcode);
    };

    const uia = async (c: Client, method: 'POST' | 'DELETE', path: string, userId: string) => {
      const first = await c.request(method, path, {});
      assert.equal(first.status, 401);
      const auth = {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: userId },
        password: PASSWORD,
        session: first.body.session,
      };
      const res = await c.request(method, path, { auth });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    };

    it('refuses a logged-out token at once, and only that one', async () => {
      await server.user('ann', { password: PASSWORD });
      const a = await login('ann');
      const b = await login('ann');
      await warm(a.client);
      await warm(b.client);
      assert.equal((await a.client.post('/_matrix/client/v3/logout')).status, 200);
      await refused(a.client);
      await warm(b.client);
      assert.equal((await b.client.post('/_matrix/client/v3/logout/all')).status, 200);
      await refused(b.client);
    });

    it('refuses the token of a deleted device and of a device logged in again', async () => {
      const bob = await server.user('bob', { password: PASSWORD });
      const phone = await login('bob');
      await warm(phone.client);
      await uia(bob, 'DELETE', `/_matrix/client/v3/devices/${phone.deviceId}`, bob.userId);
      await refused(phone.client);

      const tablet = await login('bob', 'TABLET');
      await warm(tablet.client);
      const again = await login('bob', 'TABLET');
      await refused(tablet.client);
      await warm(again.client);
    });

    it('refuses the tokens of a deactivated account and answers a locked one with M_USER_LOCKED', async () => {
      const cat = await server.user('cat', { password: PASSWORD });
      const other = await login('cat');
      await warm(cat);
      await warm(other.client);
      await uia(cat, 'POST', '/_matrix/client/v3/account/deactivate', cat.userId);
      await refused(cat);
      await refused(other.client);

      const dan = await server.user('dan', { password: PASSWORD });
      await warm(dan);
      const lock = await admin.put(`/_synapse/admin/v2/users/${encodeURIComponent(dan.userId)}`, {
        locked: true,
      });
      assert.equal(lock.status, 200, JSON.stringify(lock.body));
      await refused(dan, 'M_USER_LOCKED');
    });

    it('sees a token deleted by any code path, inside a transaction, once it commits', async () => {
      const eve = await server.user('eve', { password: PASSWORD });
      await warm(eve);
      await server.hs.storage.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('access_tokens').where('user_id', '=', eve.userId).execute();
      });
      await refused(eve);
    });
  });
}
