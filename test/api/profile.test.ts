import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { markDeactivated } from '../../src/storage/users.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const P = '/_matrix/client/v3/profile';

for (const engine of ENGINES) {
  describe(`${engine}: profiles`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let bob: Client & { userId: string };
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
    });
    after(() => server.close());

    it('serves the full profile without authentication', async () => {
      const res = await server.client().get(`${P}/${encodeURIComponent(bob.userId)}`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { displayname: 'bob' });
    });

    it('sets and reads back the display name', async () => {
      const put = await alice.put(`${P}/${alice.userId}/displayname`, { displayname: 'Alice Liddell' });
      assert.equal(put.status, 200);
      assert.deepEqual(put.body, {});
      const get = await server.client().get(`${P}/${alice.userId}/displayname`);
      assert.equal(get.status, 200);
      assert.deepEqual(get.body, { displayname: 'Alice Liddell' });
      const full = await bob.get(`${P}/${alice.userId}`);
      assert.equal(full.body.displayname, 'Alice Liddell');
    });

    it('sets, reads and clears the avatar URL', async () => {
      const mxc = 'mxc://test.local/abcDEF123';
      assert.equal((await alice.put(`${P}/${alice.userId}/avatar_url`, { avatar_url: mxc })).status, 200);
      assert.deepEqual((await alice.get(`${P}/${alice.userId}/avatar_url`)).body, { avatar_url: mxc });
      assert.equal((await alice.get(`${P}/${alice.userId}`)).body.avatar_url, mxc);

      assert.equal((await alice.put(`${P}/${alice.userId}/avatar_url`, { avatar_url: '' })).status, 200);
      const get = await alice.get(`${P}/${alice.userId}/avatar_url`);
      assert.equal(get.status, 404);
      assert.equal(get.body.errcode, 'M_NOT_FOUND');
      assert.equal('avatar_url' in (await alice.get(`${P}/${alice.userId}`)).body, false);
    });

    it('rejects an avatar URL that is not an mxc:// URI', async () => {
      const res = await alice.put(`${P}/${alice.userId}/avatar_url`, {
        avatar_url: 'https://example.com/a.png',
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      assert.match(res.body.error as string, /avatar_url/);
    });

    it('limits display names to 256 characters', async () => {
      const ok = await alice.put(`${P}/${alice.userId}/displayname`, { displayname: 'a'.repeat(256) });
      assert.equal(ok.status, 200);
      const res = await alice.put(`${P}/${alice.userId}/displayname`, { displayname: 'a'.repeat(257) });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      assert.equal((await alice.get(`${P}/${alice.userId}/displayname`)).body.displayname, 'a'.repeat(256));
    });

    it('names the missing field with M_MISSING_PARAM', async () => {
      for (const field of ['displayname', 'avatar_url']) {
        const res = await alice.put(`${P}/${alice.userId}/${field}`, {});
        assert.equal(res.status, 400);
        assert.equal(res.body.errcode, 'M_MISSING_PARAM');
        assert.match(res.body.error as string, new RegExp(field));
      }
    });

    it('rejects values of the wrong type with M_BAD_JSON', async () => {
      for (const displayname of [5, null, ['x']]) {
        const res = await alice.put(`${P}/${alice.userId}/displayname`, { displayname });
        assert.equal(res.status, 400, JSON.stringify(displayname));
        assert.equal(res.body.errcode, 'M_BAD_JSON');
        assert.match(res.body.error as string, /displayname/);
      }
    });

    it("forbids changing another user's profile", async () => {
      const res = await alice.put(`${P}/${bob.userId}/displayname`, { displayname: 'Mallory' });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      const del = await alice.delete(`${P}/${bob.userId}/displayname`);
      assert.equal(del.status, 403);
      assert.equal(del.body.errcode, 'M_FORBIDDEN');
      assert.equal((await bob.get(`${P}/${bob.userId}/displayname`)).body.displayname, 'bob');
    });

    it('requires a token to change a profile', async () => {
      const res = await server.client().put(`${P}/${alice.userId}/displayname`, { displayname: 'x' });
      assert.equal(res.status, 401);
      assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
    });

    it('deletes a field', async () => {
      const carol = await server.user('carol');
      assert.equal((await carol.delete(`${P}/${carol.userId}/displayname`)).status, 200);
      const res = await carol.get(`${P}/${carol.userId}/displayname`);
      assert.equal(res.status, 404);
      assert.equal(res.body.errcode, 'M_NOT_FOUND');
      assert.deepEqual((await carol.get(`${P}/${carol.userId}`)).body, {});
    });

    it('answers 404 M_NOT_FOUND for unknown users, 502 for users of an unreachable server', async () => {
      for (const suffix of ['', '/displayname', '/avatar_url']) {
        const res = await alice.get(`${P}/${encodeURIComponent('@nobody:test.local')}${suffix}`);
        assert.equal(res.status, 404, suffix);
        assert.equal(res.body.errcode, 'M_NOT_FOUND');
        // Asked over federation, as Synapse does; the server cannot be reached.
        const remote = await alice.get(`${P}/${encodeURIComponent('@alice:elsewhere.example')}${suffix}`);
        assert.equal(remote.status, 502, suffix);
      }
    });

    it('answers 400 M_INVALID_PARAM for a malformed user ID', async () => {
      const res = await alice.get(`${P}/alice`);
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_INVALID_PARAM');
    });

    it('hides deactivated users', async () => {
      const dave = await server.user('dave');
      assert.equal((await alice.get(`${P}/${dave.userId}`)).status, 200);
      await markDeactivated(server.hs.storage.db, dave.userId);
      for (const suffix of ['', '/displayname']) {
        const res = await alice.get(`${P}/${dave.userId}${suffix}`);
        assert.equal(res.status, 404);
        assert.equal(res.body.errcode, 'M_NOT_FOUND');
      }
    });
  });
}
