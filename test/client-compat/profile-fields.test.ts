/**
 * Custom profile fields (v1.16) over real HTTP: PUT/GET/DELETE /profile/{userId}/{keyName}, the whole profile from
 * GET /profile/{userId}, key grammar and size limits, only the owner may change them, the m.profile_fields
 * capability, and another server's user's field asked over federation (/query/profile with `field`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import { responseProblems } from '../helpers/openapi-shape.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string };
const enc = encodeURIComponent;
const fieldPath = (u: string, k: string): string => `/_matrix/client/v3/profile/${enc(u)}/${enc(k)}`;

for (const engine of ENGINES) {
  describe(`${engine}: custom profile fields`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('pf_alice');
      bob = await server.user('pf_bob');
    });
    after(() => server.close());

    it('sets, reads, lists and deletes custom fields of any JSON type', async () => {
      const put = await alice.put(fieldPath(alice.userId, 'm.tz'), { 'm.tz': 'Europe/London' });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual(
        responseProblems('profile.yaml', '/profile/{userId}/{keyName}', 'put', 200, put.body),
        [],
      );
      const obj = { pronouns: ['she', 'her'], n: 3 };
      assert.equal(
        (await alice.put(fieldPath(alice.userId, 'org.example.info'), { 'org.example.info': obj })).status,
        200,
      );
      assert.equal(
        (await alice.put(fieldPath(alice.userId, 'org.example.none'), { 'org.example.none': null })).status,
        200,
      );
      assert.equal(
        (
          await alice.put(`/_matrix/client/v3/profile/${enc(alice.userId)}/displayname`, {
            displayname: 'Alice',
          })
        ).status,
        200,
      );
      const one = await bob.get(fieldPath(alice.userId, 'org.example.info'));
      assert.equal(one.status, 200);
      assert.deepEqual(one.body, { 'org.example.info': obj });
      assert.deepEqual(
        responseProblems('profile.yaml', '/profile/{userId}/{keyName}', 'get', 200, one.body),
        [],
      );
      assert.deepEqual((await bob.get(fieldPath(alice.userId, 'org.example.none'))).body, {
        'org.example.none': null,
      });
      const all = await bob.get(`/_matrix/client/v3/profile/${enc(alice.userId)}`);
      assert.equal(all.status, 200);
      assert.deepEqual(all.body, {
        displayname: 'Alice',
        'm.tz': 'Europe/London',
        'org.example.info': obj,
        'org.example.none': null,
      });
      assert.deepEqual(responseProblems('profile.yaml', '/profile/{userId}', 'get', 200, all.body), []);
      // Overwrite, then delete (twice: deleting an absent field is fine).
      assert.equal((await alice.put(fieldPath(alice.userId, 'm.tz'), { 'm.tz': 'Asia/Tokyo' })).status, 200);
      assert.deepEqual((await bob.get(fieldPath(alice.userId, 'm.tz'))).body, { 'm.tz': 'Asia/Tokyo' });
      for (let i = 0; i < 2; i++)
        assert.equal((await alice.delete(fieldPath(alice.userId, 'm.tz'))).status, 200);
      const gone = await bob.get(fieldPath(alice.userId, 'm.tz'));
      assert.equal(gone.status, 404);
      assert.equal(gone.body.errcode, 'M_NOT_FOUND');
      assert.equal((await bob.get(fieldPath(`@nobody:${server.serverName}`, 'm.tz'))).status, 404);
    });

    it('refuses bad keys, bodies, oversized profiles and other users', async () => {
      const err = async (
        path: string,
        body: unknown,
        status: number,
        errcode: string,
        who: Client = alice,
      ) => {
        const res = await who.put(path, body);
        assert.equal(res.status, status, `${path}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, errcode, path);
      };
      await err(fieldPath(alice.userId, `org.${'a'.repeat(260)}`), {}, 400, 'M_KEY_TOO_LARGE');
      await err(fieldPath(alice.userId, 'Org.Example'), { 'Org.Example': 1 }, 400, 'M_INVALID_PARAM');
      await err(fieldPath(alice.userId, 'm.unknown'), { 'm.unknown': 1 }, 400, 'M_INVALID_PARAM');
      await err(fieldPath(alice.userId, 'org.example.x'), { other: 1 }, 400, 'M_MISSING_PARAM');
      await err(fieldPath(alice.userId, 'm.tz'), { 'm.tz': 5 }, 400, 'M_INVALID_PARAM');
      await err(fieldPath(alice.userId, 'org.example.x'), { 'org.example.x': 1 }, 403, 'M_FORBIDDEN', bob);
      const half = 'x'.repeat(40 * 1024);
      assert.equal(
        (await alice.put(fieldPath(alice.userId, 'org.example.big'), { 'org.example.big': half })).status,
        200,
      );
      await err(
        fieldPath(alice.userId, 'org.example.big2'),
        { 'org.example.big2': half },
        400,
        'M_PROFILE_TOO_LARGE',
      );
      assert.equal((await bob.delete(fieldPath(alice.userId, 'org.example.big'))).status, 403);
      assert.equal((await alice.delete(fieldPath(alice.userId, 'org.example.big'))).status, 200);
    });

    it('advertises the m.profile_fields capability', async () => {
      const res = await alice.get('/_matrix/client/v3/capabilities');
      assert.deepEqual((res.body.capabilities as Record<string, unknown>)['m.profile_fields'], {
        enabled: true,
      });
    });
  });

  describe(`${engine}: custom profile fields over federation`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    before(async () => {
      a = await startFederatedServer(engine);
      b = await startFederatedServer(engine);
    });
    after(async () => {
      await a.close();
      await b.close();
    });

    it("reads another server's user's custom field through /query/profile", async () => {
      const alice = await a.user('pff_alice');
      const bob = await b.user('pff_bob');
      assert.equal((await bob.put(fieldPath(bob.userId, 'm.tz'), { 'm.tz': 'Europe/Paris' })).status, 200);
      const res = await alice.get(fieldPath(bob.userId, 'm.tz'));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { 'm.tz': 'Europe/Paris' });
      const missing = await alice.get(fieldPath(bob.userId, 'org.example.none'));
      assert.equal(missing.status, 404);
    });
  });
}
