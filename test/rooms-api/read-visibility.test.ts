import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string; deviceId: string };
const enc = encodeURIComponent;

async function send(u: User, roomId: string, body: string): Promise<string> {
  const txn = `t${Math.random().toString(36).slice(2)}`;
  const res = await u.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${txn}`, {
    msgtype: 'm.text',
    body,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function messages(u: User, roomId: string): Promise<{ status: number; bodies: string[] }> {
  const res = await u.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=f&limit=100`);
  if (res.status !== 200) return { status: res.status, bodies: [] };
  const chunk = res.body.chunk as Json[];
  const bodies = chunk
    .filter((e) => e.type === 'm.room.message')
    .map((e) => (e.content as Json).body as string);
  return { status: 200, bodies };
}

interface Scenario {
  roomId: string;
  ids: Record<string, string>;
}

/** alice: msg, invite bob, msg, bob joins, msg, bob leaves, msg, rename. */
async function scenario(alice: User, bob: User, visibility: string): Promise<Scenario> {
  const created = await alice.post('/_matrix/client/v3/createRoom', {
    preset: 'private_chat',
    name: 'before',
    initial_state: [
      { type: 'm.room.history_visibility', state_key: '', content: { history_visibility: visibility } },
    ],
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const roomId = created.body.room_id as string;
  const rid = enc(roomId);
  const ids: Record<string, string> = {};
  ids.beforeInvite = await send(alice, roomId, 'before-invite');
  assert.equal(
    (await alice.post(`/_matrix/client/v3/rooms/${rid}/invite`, { user_id: bob.userId })).status,
    200,
  );
  ids.whileInvited = await send(alice, roomId, 'while-invited');
  assert.equal((await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);
  ids.whileJoined = await send(alice, roomId, 'while-joined');
  assert.equal((await bob.post(`/_matrix/client/v3/rooms/${rid}/leave`, {})).status, 200);
  ids.afterLeave = await send(alice, roomId, 'after-leave');
  const renamed = await alice.put(`/_matrix/client/v3/rooms/${rid}/state/m.room.name/`, { name: 'after' });
  assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
  return { roomId, ids };
}

const ALL = ['before-invite', 'while-invited', 'while-joined', 'after-leave'];
const EXPECTED: Record<string, string[]> = {
  joined: ['while-joined'],
  invited: ['while-invited', 'while-joined'],
  shared: ['before-invite', 'while-invited', 'while-joined'],
  world_readable: ALL,
};

for (const engine of ENGINES) {
  describe(`${engine}: room reads — history visibility`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      carol = await server.user('carol');
    });
    after(() => server.close());

    for (const visibility of ['joined', 'invited', 'shared', 'world_readable']) {
      it(`${visibility}: a departed member sees what the spec allows up to the leave, a stranger per setting`, async () => {
        const { roomId, ids } = await scenario(alice, bob, visibility);
        const rid = enc(roomId);
        assert.deepEqual((await messages(alice, roomId)).bodies, ALL, 'the creator sees everything');
        const seen = await messages(bob, roomId);
        assert.equal(seen.status, 200);
        assert.deepEqual(seen.bodies, EXPECTED[visibility]);
        const backwards = await bob.get(`/_matrix/client/v3/rooms/${rid}/messages?dir=b&limit=100`);
        const backBodies = (backwards.body.chunk as Json[])
          .filter((e) => e.type === 'm.room.message')
          .map((e) => (e.content as Json).body);
        assert.deepEqual(backBodies, [...(EXPECTED[visibility] as string[])].reverse());

        // Single events and context follow the same rule.
        for (const [key, id] of Object.entries(ids)) {
          const body = {
            beforeInvite: 'before-invite',
            whileInvited: 'while-invited',
            whileJoined: 'while-joined',
            afterLeave: 'after-leave',
          }[key] as string;
          const allowed = (EXPECTED[visibility] as string[]).includes(body);
          const ev = await bob.get(`/_matrix/client/v3/rooms/${rid}/event/${enc(id)}`);
          assert.equal(ev.status, allowed ? 200 : 404, `${visibility} /event ${body}`);
          const ctx = await bob.get(`/_matrix/client/v3/rooms/${rid}/context/${enc(id)}`);
          assert.equal(ctx.status, allowed ? 200 : 403, `${visibility} /context ${body}`);
        }

        // State as at the leave, unless the room is world readable.
        const name = await bob.get(`/_matrix/client/v3/rooms/${rid}/state/m.room.name/`);
        assert.equal(name.status, 200);
        assert.equal(name.body.name, visibility === 'world_readable' ? 'after' : 'before');
        const members = await bob.get(`/_matrix/client/v3/rooms/${rid}/members`);
        assert.equal(members.status, 200);
        const bobMember = (members.body.chunk as Json[]).find((e) => e.state_key === bob.userId);
        assert.equal((bobMember?.content as Json).membership, 'leave');
        const joinedMembers = await bob.get(`/_matrix/client/v3/rooms/${rid}/joined_members`);
        assert.equal(joinedMembers.status, visibility === 'world_readable' ? 200 : 403);

        // A stranger is refused everywhere, unless the room is world readable.
        const open = visibility === 'world_readable';
        const stranger = await messages(carol, roomId);
        assert.equal(stranger.status, open ? 200 : 403);
        if (open) assert.deepEqual(stranger.bodies, ALL);
        for (const path of [
          'state',
          'members',
          'state/m.room.name/',
          `context/${enc(ids.whileJoined as string)}`,
        ]) {
          const res = await carol.get(`/_matrix/client/v3/rooms/${rid}/${path}`);
          assert.equal(res.status, open ? 200 : 403, `stranger ${path}`);
          if (!open) assert.equal(res.body.errcode, 'M_FORBIDDEN');
        }
        const single = await carol.get(
          `/_matrix/client/v3/rooms/${rid}/event/${enc(ids.whileJoined as string)}`,
        );
        assert.equal(single.status, open ? 200 : 404);
        const ts = await carol.get(`/_matrix/client/v1/rooms/${rid}/timestamp_to_event?ts=0&dir=f`);
        assert.equal(ts.status, open ? 200 : 403);
      });
    }

    it('a member who rejoins sees the new stretch but not the gap under `joined`', async () => {
      const { roomId } = await scenario(alice, bob, 'joined');
      const rid = enc(roomId);
      await alice.post(`/_matrix/client/v3/rooms/${rid}/invite`, { user_id: bob.userId });
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);
      await send(alice, roomId, 'back-again');
      assert.deepEqual((await messages(bob, roomId)).bodies, ['while-joined', 'back-again']);
    });
  });
}
