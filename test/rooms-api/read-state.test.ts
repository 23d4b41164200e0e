import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string; deviceId: string };
const enc = encodeURIComponent;

for (const engine of ENGINES) {
  describe(`${engine}: room reads — state and members`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    let rid: string;
    let beforeBob: string;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      carol = await server.user('carol');
      const created = await alice.post('/_matrix/client/v3/createRoom', {
        preset: 'public_chat',
        name: 'Room',
      });
      assert.equal(created.status, 200);
      rid = enc(created.body.room_id as string);
      const msgs = await alice.get(`/_matrix/client/v3/rooms/${rid}/messages?dir=b&limit=1`);
      beforeBob = msgs.body.start as string;
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);
      assert.equal(
        (await alice.post(`/_matrix/client/v3/rooms/${rid}/invite`, { user_id: carol.userId })).status,
        200,
      );
    });
    after(() => server.close());

    it('serves the full current state and single state events', async () => {
      const state = await bob.get(`/_matrix/client/v3/rooms/${rid}/state`);
      assert.equal(state.status, 200);
      const types = new Set((state.body as unknown as Json[]).map((e) => e.type));
      for (const t of [
        'm.room.create',
        'm.room.power_levels',
        'm.room.join_rules',
        'm.room.name',
        'm.room.member',
      ]) {
        assert.ok(types.has(t), t);
      }
      for (const path of ['state/m.room.create', 'state/m.room.create/']) {
        const res = await bob.get(`/_matrix/client/v3/rooms/${rid}/${path}`);
        assert.equal(res.status, 200, path);
        assert.equal(typeof res.body.room_version, 'string');
      }
      const name = await bob.get(`/_matrix/client/v3/rooms/${rid}/state/m.room.name/?format=event`);
      assert.equal(name.status, 200);
      assert.equal(name.body.type, 'm.room.name');
      assert.equal((name.body.content as Json).name, 'Room');
      assert.equal(typeof name.body.event_id, 'string');
      const member = await bob.get(
        `/_matrix/client/v3/rooms/${rid}/state/m.room.member/${enc(alice.userId)}`,
      );
      assert.equal(member.body.membership, 'join');
      const missing = await bob.get(`/_matrix/client/v3/rooms/${rid}/state/m.room.topic/`);
      assert.equal(missing.status, 404);
      assert.equal(missing.body.errcode, 'M_NOT_FOUND');
    });

    it('lists members with membership filters and at a token', async () => {
      const all = await bob.get(`/_matrix/client/v3/rooms/${rid}/members`);
      const byUser = new Map(
        (all.body.chunk as Json[]).map((e) => [e.state_key, (e.content as Json).membership]),
      );
      assert.deepEqual(Object.fromEntries(byUser), {
        [alice.userId]: 'join',
        [bob.userId]: 'join',
        [carol.userId]: 'invite',
      });
      const joined = await bob.get(`/_matrix/client/v3/rooms/${rid}/members?membership=join`);
      assert.deepEqual(
        (joined.body.chunk as Json[]).map((e) => e.state_key).sort(),
        [alice.userId, bob.userId].sort(),
      );
      const notJoined = await bob.get(`/_matrix/client/v3/rooms/${rid}/members?not_membership=join`);
      assert.deepEqual(
        (notJoined.body.chunk as Json[]).map((e) => e.state_key),
        [carol.userId],
      );
      const past = await bob.get(`/_matrix/client/v3/rooms/${rid}/members?at=${enc(beforeBob)}`);
      assert.equal(past.status, 200);
      assert.deepEqual(
        (past.body.chunk as Json[]).map((e) => e.state_key),
        [alice.userId],
      );
      const bad = await bob.get(`/_matrix/client/v3/rooms/${rid}/members?at=nonsense`);
      assert.equal(bad.status, 400);
      assert.equal(bad.body.errcode, 'M_INVALID_PARAM');
      const badFilter = await bob.get(`/_matrix/client/v3/rooms/${rid}/members?membership=friends`);
      assert.equal(badFilter.status, 400);
    });

    it('gives joined members with profiles, only to members', async () => {
      const res = await bob.get(`/_matrix/client/v3/rooms/${rid}/joined_members`);
      assert.equal(res.status, 200);
      const joined = res.body.joined as Record<string, Json>;
      assert.deepEqual(Object.keys(joined).sort(), [alice.userId, bob.userId].sort());
      assert.equal(joined[alice.userId]?.display_name, 'alice');
      const invited = await carol.get(`/_matrix/client/v3/rooms/${rid}/joined_members`);
      assert.equal(invited.status, 403);
      const dave = await server.user('dave');
      const stranger = await dave.get(`/_matrix/client/v3/rooms/${rid}/joined_members`);
      assert.equal(stranger.status, 403);
      assert.equal(stranger.body.errcode, 'M_FORBIDDEN');
      const unknownRoom = await dave.get(`/_matrix/client/v3/rooms/${enc('!nope:test.local')}/state`);
      assert.equal(unknownRoom.status, 403);
      const badRoom = await dave.get(`/_matrix/client/v3/rooms/${enc('#alias:test.local')}/state`);
      assert.equal(badRoom.status, 400);
    });
  });
}
