/**
 * POST /_matrix/client/v3/users/{userId}/report (v1.14) over real HTTP: stored for existing local users, 200 without
 * a trace for unknown and remote users (the spec's anti-enumeration MAY), bad input, and the report rate limit shared
 * with room and event reports.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { userReportsOf } from '../../src/storage/user-reports.js';
import { ENGINES } from '../helpers/engines.js';
import { responseProblems } from '../helpers/openapi-shape.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string };
const enc = encodeURIComponent;
const reportPath = (userId: string): string => `/_matrix/client/v3/users/${enc(userId)}/report`;

for (const engine of ENGINES) {
  describe(`${engine}: POST /users/{userId}/report`, () => {
    let server: TestServer;
    let alice: User;
    let mallory: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('rep_alice');
      mallory = await server.user('rep_mallory');
    });
    after(() => server.close());

    it('stores a report of an existing local user', async () => {
      const res = await alice.post(reportPath(mallory.userId), { reason: 'spam in DMs' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, {});
      assert.deepEqual(
        responseProblems('report_content.yaml', '/users/{userId}/report', 'post', 200, res.body),
        [],
      );
      const reports = await userReportsOf(server.hs.storage.db, mallory.userId);
      assert.equal(reports.length, 1);
      assert.equal(reports[0]?.userId, alice.userId);
      assert.equal(reports[0]?.reason, 'spam in DMs');
      // A blank reason is allowed ("May be blank").
      assert.equal((await alice.post(reportPath(mallory.userId), { reason: '' })).status, 200);
      assert.equal((await userReportsOf(server.hs.storage.db, mallory.userId)).length, 2);
    });

    it('answers unknown and remote users like known ones, storing nothing', async () => {
      for (const target of [`@nobody:${server.serverName}`, '@someone:elsewhere.example']) {
        const res = await alice.post(reportPath(target), { reason: 'who?' });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.deepEqual(res.body, {});
        assert.deepEqual(await userReportsOf(server.hs.storage.db, target), []);
      }
    });

    it('refuses bad input and anonymous callers', async () => {
      const missing = await alice.post(reportPath(mallory.userId), {});
      assert.equal(missing.status, 400);
      assert.equal(typeof missing.body.errcode, 'string');
      const long = await alice.post(reportPath(mallory.userId), { reason: 'x'.repeat(1001) });
      assert.equal(long.status, 400);
      assert.equal(long.body.errcode, 'M_BAD_JSON');
      const badId = await alice.post(reportPath('not-a-user'), { reason: 'x' });
      assert.equal(badId.status, 400);
      const anon = await alice.post(reportPath(mallory.userId), { reason: 'x' }, { token: null });
      assert.equal(anon.status, 401);
      assert.equal(anon.body.errcode, 'M_MISSING_TOKEN');
    });
  });

  describe(`${engine}: report rate limit`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, {
        rate_limiting: {
          enabled: true,
          login: { per_second: 100, burst_count: 100 },
          register: { per_second: 100, burst_count: 100 },
        },
      });
    });
    after(() => server.close());

    it('user, room and event reports share one bucket (burst 5), admins are exempt', async () => {
      const alice = await server.user('rl_alice');
      const bob = await server.user('rl_bob');
      const admin = await server.user('rl_admin', { admin: true });
      const created = await alice.post('/_matrix/client/v3/createRoom', {});
      const roomId = created.body.room_id as string;
      for (let i = 0; i < 4; i++) {
        assert.equal((await alice.post(reportPath(bob.userId), { reason: `r${i}` })).status, 200);
      }
      const room = await alice.post(`/_matrix/client/v3/rooms/${enc(roomId)}/report`, { reason: 'r4' });
      assert.equal(room.status, 200, JSON.stringify(room.body));
      const limited = await alice.post(reportPath(bob.userId), { reason: 'r5' });
      assert.equal(limited.status, 429);
      assert.equal(limited.body.errcode, 'M_LIMIT_EXCEEDED');
      assert.equal(typeof limited.body.retry_after_ms, 'number');
      assert.equal((await userReportsOf(server.hs.storage.db, bob.userId)).length, 4);
      assert.equal((await admin.post(reportPath(bob.userId), { reason: 'admin' })).status, 200);
    });
  });
}
