/**
 * GET/PUT /_matrix/client/v1/admin/{lock,suspend}/{userId} (v1.18) over real HTTP: admins only, local active users
 * only, not oneself nor another admin; a locked account gets 401 M_USER_LOCKED with soft_logout everywhere but
 * logout; a suspended account gets 403 M_USER_SUSPENDED for joining, inviting, sending, creating rooms, profile
 * changes, uploads and redacting others' events, and keeps reading, syncing, leaving and redacting its own events.
 * Bodies are checked against admin.yaml.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { responseProblems } from '../helpers/openapi-shape.js';
import {
  startTestServer,
  type Client,
  type Json,
  type Response,
  type TestServer,
} from '../helpers/server.js';

type User = Client & { userId: string };
const enc = encodeURIComponent;

function ok(res: Response, what: string): Json {
  assert.equal(res.status, 200, `${what}: ${JSON.stringify(res.body)}`);
  return res.body;
}

function suspended(res: Response, what: string): void {
  assert.equal(res.status, 403, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body.errcode, 'M_USER_SUSPENDED', what);
}

for (const engine of ENGINES) {
  describe(`${engine}: admin lock and suspend`, () => {
    let server: TestServer;
    let admin: User;
    let admin2: User;
    let alice: User;
    let bob: User;

    const lockPath = (u: string): string => `/_matrix/client/v1/admin/lock/${enc(u)}`;
    const suspendPath = (u: string): string => `/_matrix/client/v1/admin/suspend/${enc(u)}`;

    before(async () => {
      server = await startTestServer(engine);
      admin = await server.user('adm_root', { admin: true });
      admin2 = await server.user('adm_other', { admin: true });
      alice = await server.user('adm_alice');
      bob = await server.user('adm_bob');
    });
    after(() => server.close());

    it('refuses non-admins, remote, unknown and protected targets', async () => {
      const denied = await alice.get(lockPath(bob.userId));
      assert.equal(denied.status, 403);
      assert.equal(denied.body.errcode, 'M_FORBIDDEN');
      assert.equal((await alice.put(suspendPath(bob.userId), { suspended: true })).status, 403);
      const remote = await admin.get(lockPath('@x:elsewhere.example'));
      assert.equal(remote.status, 400);
      assert.equal(remote.body.errcode, 'M_INVALID_PARAM');
      const unknown = await admin.get(suspendPath(`@ghost:${server.serverName}`));
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
      assert.equal((await admin.put(lockPath(admin.userId), { locked: true })).status, 403);
      assert.equal((await admin.put(suspendPath(admin2.userId), { suspended: true })).status, 403);
      assert.equal((await admin.put(lockPath(bob.userId), { locked: 'yes' })).status, 400);
    });

    it('locks and unlocks: 401 M_USER_LOCKED with soft_logout everywhere but logout', async () => {
      const initial = ok(await admin.get(lockPath(bob.userId)), 'get lock');
      assert.deepEqual(initial, { locked: false });
      assert.deepEqual(responseProblems('admin.yaml', '/v1/admin/lock/{userId}', 'get', 200, initial), []);
      const put = ok(await admin.put(lockPath(bob.userId), { locked: true }), 'lock');
      assert.deepEqual(put, { locked: true });
      assert.deepEqual(responseProblems('admin.yaml', '/v1/admin/lock/{userId}', 'put', 200, put), []);
      assert.deepEqual(ok(await admin.get(lockPath(bob.userId)), 'get lock'), { locked: true });
      const whoami = await bob.get('/_matrix/client/v3/account/whoami');
      assert.equal(whoami.status, 401);
      assert.equal(whoami.body.errcode, 'M_USER_LOCKED');
      assert.equal(whoami.body.soft_logout, true);
      ok(await admin.put(lockPath(bob.userId), { locked: false }), 'unlock');
      ok(await bob.get('/_matrix/client/v3/account/whoami'), 'whoami after unlock');
      // A locked user may still log out.
      const carol = await server.user('adm_carol');
      ok(await admin.put(lockPath(carol.userId), { locked: true }), 'lock carol');
      ok(await carol.post('/_matrix/client/v3/logout', {}), 'logout while locked');
    });

    it('a suspended user may read, leave and redact their own events, and nothing on the forbidden list', async () => {
      const roomRes = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const room = ok(roomRes, 'create').room_id as string;
      const other = ok(await bob.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' }), 'create')
        .room_id as string;
      ok(await bob.post(`/_matrix/client/v3/join/${enc(room)}`, {}), 'bob joins');
      const mine = ok(
        await alice.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/t1`, {
          msgtype: 'm.text',
          body: 'a',
        }),
        'send',
      ).event_id as string;
      const bobs = ok(
        await bob.put(`/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/t1`, {
          msgtype: 'm.text',
          body: 'b',
        }),
        'send',
      ).event_id as string;

      const put = ok(await admin.put(suspendPath(alice.userId), { suspended: true }), 'suspend');
      assert.deepEqual(put, { suspended: true });
      assert.deepEqual(responseProblems('admin.yaml', '/v1/admin/suspend/{userId}', 'put', 200, put), []);
      const got = ok(await admin.get(suspendPath(alice.userId)), 'get suspend');
      assert.deepEqual(got, { suspended: true });
      assert.deepEqual(responseProblems('admin.yaml', '/v1/admin/suspend/{userId}', 'get', 200, got), []);

      const r = `/_matrix/client/v3/rooms/${enc(room)}`;
      suspended(await alice.put(`${r}/send/m.room.message/t2`, { msgtype: 'm.text', body: 'no' }), 'send');
      suspended(await alice.put(`${r}/state/m.room.topic`, { topic: 'no' }), 'state');
      suspended(await alice.post(`/_matrix/client/v3/join/${enc(other)}`, {}), 'join');
      suspended(await alice.post(`/_matrix/client/r0/rooms/${enc(other)}/join`, {}), 'join (r0)');
      suspended(await alice.post(`${r}/invite`, { user_id: admin.userId }), 'invite');
      suspended(await alice.post('/_matrix/client/v3/createRoom', {}), 'createRoom');
      suspended(
        await alice.put(`/_matrix/client/v3/profile/${enc(alice.userId)}/displayname`, { displayname: 'x' }),
        'displayname',
      );
      suspended(
        await alice.request('POST', '/_matrix/media/v3/upload', undefined, {
          raw: 'hello',
          headers: { 'content-type': 'text/plain' },
        }),
        'upload',
      );
      suspended(await alice.put(`${r}/redact/${enc(bobs)}/t3`, {}), "redacting another's event");

      // Still allowed: reading, syncing, redacting own events, leaving.
      ok(await alice.get(`${r}/messages?dir=b&limit=5`), 'messages');
      ok(await alice.get('/_matrix/client/v3/sync?timeout=0'), 'sync');
      ok(await alice.put(`${r}/redact/${enc(mine)}/t4`, {}), 'redact own');
      ok(await alice.post(`${r}/leave`, {}), 'leave');
      // Other users are not affected.
      ok(await bob.put(`${r}/send/m.room.message/t5`, { msgtype: 'm.text', body: 'fine' }), 'bob sends');

      ok(await admin.put(suspendPath(alice.userId), { suspended: false }), 'unsuspend');
      assert.deepEqual(ok(await admin.get(suspendPath(alice.userId)), 'get'), { suspended: false });
      ok(await alice.post(`/_matrix/client/v3/join/${enc(room)}`, {}), 'join after unsuspension');
    });
  });
}
