/**
 * Invite blocking and /sync (v1.18 "Invite permission"): invites already stored when a user starts blocking invites
 * are no longer served by /sync (initial or incremental); once the block is lifted they are served again (the spec's
 * MAY). Over real HTTP on both engines.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, enc, post, roomsOf, sync, syncSince, type User } from '../sync/sync-util.js';

const CONFIG = 'm.invite_permission_config';

async function setBlock(u: User, block: boolean): Promise<void> {
  const res = await u.put(
    `/_matrix/client/v3/user/${enc(u.userId)}/account_data/${CONFIG}`,
    block ? { default_action: 'block' } : {},
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

for (const engine of ENGINES) {
  describe(`${engine}: invite blocking hides stored invites from /sync`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ibs_alice');
      bob = await server.user('ibs_bob');
    });
    after(() => server.close());

    it('an invite received before the block is not served while it lasts', async () => {
      const roomId = await createRoom(alice);
      const before = await sync(bob, { timeout: 0 });
      await post(alice, `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: bob.userId });
      assert.ok(roomsOf(await sync(bob), 'invite')[roomId], 'served before the block');

      await setBlock(bob, true);
      assert.equal(roomsOf(await sync(bob), 'invite')[roomId], undefined, 'initial sync');
      const inc = await syncSince(bob, before);
      assert.equal(roomsOf(inc, 'invite')[roomId], undefined, 'incremental sync');
      // The block changed account data: that is still served.
      const ad = (inc.account_data as { events: { type: string }[] }).events;
      assert.ok(ad.some((e) => e.type === CONFIG));

      await setBlock(bob, false);
      assert.ok(roomsOf(await sync(bob), 'invite')[roomId], 'served again once the block is lifted');
    });
  });
}
