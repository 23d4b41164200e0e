/**
 * Invite blocking (v1.18, m.invite_permission_config) over real HTTP: a local user who blocks invites is refused
 * with 403 M_INVITE_BLOCKED by /invite and by PUT state m.room.member, left out of createRoom's invite list while the
 * room is still created, invitable again once the block is lifted; over federation the invitee's server refuses the
 * v2 invite and the invite never arrives.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string };
const enc = encodeURIComponent;
const CONFIG = 'm.invite_permission_config';

async function setBlock(u: User, block: boolean): Promise<void> {
  const res = await u.put(
    `/_matrix/client/v3/user/${enc(u.userId)}/account_data/${CONFIG}`,
    block ? { default_action: 'block' } : {},
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function members(u: User, roomId: string): Promise<Record<string, string>> {
  const res = await u.get(`/_matrix/client/v3/rooms/${enc(roomId)}/members`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const out: Record<string, string> = {};
  for (const e of res.body.chunk as { state_key: string; content: { membership: string } }[])
    out[e.state_key] = e.content.membership;
  return out;
}

for (const engine of ENGINES) {
  describe(`${engine}: invite blocking on this server`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ib_alice');
      bob = await server.user('ib_bob');
      carol = await server.user('ib_carol');
    });
    after(() => server.close());

    it('refuses invites to a blocking user with M_INVITE_BLOCKED, until the block is lifted', async () => {
      await setBlock(bob, true);
      const created = await alice.post('/_matrix/client/v3/createRoom', {});
      const roomId = created.body.room_id as string;
      const inv = await alice.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: bob.userId });
      assert.equal(inv.status, 403, JSON.stringify(inv.body));
      assert.equal(inv.body.errcode, 'M_INVITE_BLOCKED');
      const state = await alice.put(
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`,
        {
          membership: 'invite',
        },
      );
      assert.equal(state.status, 403, JSON.stringify(state.body));
      assert.equal(state.body.errcode, 'M_INVITE_BLOCKED');
      assert.equal((await members(alice, roomId))[bob.userId], undefined);
      // Others are unaffected.
      const invCarol = await alice.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
        user_id: carol.userId,
      });
      assert.equal(invCarol.status, 200);
      // Any other default_action (or none) blocks nothing.
      await setBlock(bob, false);
      const again = await alice.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
        user_id: bob.userId,
      });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal((await members(alice, roomId))[bob.userId], 'invite');
    });

    it('createRoom leaves a blocking invitee out and still creates the room', async () => {
      await setBlock(bob, true);
      const created = await alice.post('/_matrix/client/v3/createRoom', {
        invite: [bob.userId, carol.userId],
      });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const m = await members(alice, created.body.room_id as string);
      assert.equal(m[carol.userId], 'invite');
      assert.equal(m[bob.userId], undefined);
      await setBlock(bob, false);
    });
  });

  describe(`${engine}: invite blocking over federation`, () => {
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

    it("the invitee's server refuses the invite; nothing reaches the invitee", async () => {
      const alice = await a.user('ibf_alice');
      const bob = await b.user('ibf_bob');
      await setBlock(bob, true);
      const created = await alice.post('/_matrix/client/v3/createRoom', {});
      const roomId = created.body.room_id as string;
      const inv = await alice.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: bob.userId });
      assert.equal(inv.status, 403, JSON.stringify(inv.body));
      const sync = await bob.get('/_matrix/client/v3/sync?timeout=0');
      const invites = ((sync.body.rooms as Record<string, unknown> | undefined)?.invite ?? {}) as Record<
        string,
        unknown
      >;
      assert.equal(invites[roomId], undefined);
      assert.equal((await members(alice, roomId))[bob.userId], undefined);
    });
  });
}
