/**
 * The m.account_moderation capability (v1.18, MSC4323) over real HTTP on both engines: a server admin is told they
 * may suspend and lock users (PUT /v1/admin/{suspend,lock}/{userId}); anyone else gets no such capability.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

async function capabilities(c: Client): Promise<Record<string, unknown>> {
  const res = await c.get('/_matrix/client/v3/capabilities');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.capabilities as Record<string, unknown>;
}

for (const engine of ENGINES) {
  describe(`${engine}: m.account_moderation capability`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('is { suspend: true, lock: true } for an admin, and absent for others', async () => {
      const admin = await server.user('amc_admin', { admin: true });
      const user = await server.user('amc_user');
      assert.deepEqual((await capabilities(admin))['m.account_moderation'], { suspend: true, lock: true });
      const theirs = await capabilities(user);
      assert.equal(theirs['m.account_moderation'], undefined);
      assert.deepEqual(theirs['m.change_password'], { enabled: true });
      // What the capability announces works: the admin suspends the user.
      const res = await admin.put(`/_matrix/client/v1/admin/suspend/${encodeURIComponent(user.userId)}`, {
        suspended: true,
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    });
  });
}
