/**
 * Deactivation's data over real HTTP on both engines: POST /account/deactivate deletes the account data and key
 * backup and leaves every room; with `erase: true` (and the admin API's erase) the custom profile fields are deleted too, without it
 * they are kept (as Synapse does) but no longer served. Guests may read custom profile fields.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string };
const enc = encodeURIComponent;
const DEACTIVATE = '/_matrix/client/v3/account/deactivate';
const PASSWORD = 'correct horse battery staple';

async function deactivate(u: User, erase: boolean | undefined): Promise<void> {
  const localpart = u.userId.slice(1, u.userId.indexOf(':'));
  const auth = {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user: localpart },
    password: PASSWORD,
  };
  const res = await u.post(DEACTIVATE, { auth, ...(erase === undefined ? {} : { erase }) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function setField(u: User, key: string, value: unknown): Promise<void> {
  const res = await u.put(`/_matrix/client/v3/profile/${enc(u.userId)}/${key}`, { [key]: value });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

for (const engine of ENGINES) {
  describe(`${engine}: deactivation and profile data`, () => {
    let server: TestServer;
    let alice: User;
    type Table = 'profile_fields' | 'account_data' | 'room_keys' | 'room_key_versions';
    const rows = async (table: Table, userId: string): Promise<number> =>
      (await server.hs.storage.db.selectFrom(table).select('user_id').where('user_id', '=', userId).execute())
        .length;

    before(async () => {
      server = await startTestServer(engine, { enable_registration: true, allow_guest_access: true });
      alice = await server.user('dz_alice');
    });
    after(() => server.close());

    /** A user with custom fields and account data, joined to a room of Alice's. */
    async function prepared(localpart: string): Promise<{ user: User; roomId: string }> {
      const user = await server.user(localpart);
      await setField(user, 'org.example.pet', { name: 'Rex' });
      await setField(user, 'm.tz', 'Europe/Paris');
      const ad = await user.put(
        `/_matrix/client/v3/user/${enc(user.userId)}/account_data/m.ignored_user_list`,
        {
          ignored_users: { [alice.userId]: {} },
        },
      );
      assert.equal(ad.status, 200);
      const version = await user.post('/_matrix/client/v3/room_keys/version', {
        algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2',
        auth_data: { public_key: 'a' },
      });
      assert.equal(version.status, 200, JSON.stringify(version.body));
      const key = await user.put(
        `/_matrix/client/v3/room_keys/keys/${enc('!r:test.local')}/s1?version=${version.body.version as string}`,
        { first_message_index: 0, forwarded_count: 0, is_verified: false, session_data: { ciphertext: 'c' } },
      );
      assert.equal(key.status, 200, JSON.stringify(key.body));
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const roomId = created.body.room_id as string;
      assert.equal((await user.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {})).status, 200);
      return { user, roomId };
    }

    const membership = async (roomId: string, userId: string): Promise<unknown> => {
      const res = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`,
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.membership;
    };

    it('with erase: custom fields and account data are deleted, the rooms left', async () => {
      const { user, roomId } = await prepared('dz_erased');
      assert.equal(await rows('profile_fields', user.userId), 2);
      assert.equal(await rows('room_keys', user.userId), 1);
      await deactivate(user, true);
      assert.equal(await rows('profile_fields', user.userId), 0);
      assert.equal(await rows('account_data', user.userId), 0);
      assert.equal(await rows('room_keys', user.userId), 0);
      assert.equal(await rows('room_key_versions', user.userId), 0);
      const field = await alice.get(`/_matrix/client/v3/profile/${enc(user.userId)}/org.example.pet`);
      assert.equal(field.status, 404);
      const whole = await alice.get(`/_matrix/client/v3/profile/${enc(user.userId)}`);
      assert.equal(whole.status, 404);
      assert.equal(await membership(roomId, user.userId), 'leave');
    });

    it('without erase: account data is deleted, custom fields kept but not served', async () => {
      const { user, roomId } = await prepared('dz_kept');
      await deactivate(user, undefined);
      assert.equal(await rows('account_data', user.userId), 0);
      assert.equal(await rows('profile_fields', user.userId), 2);
      const field = await alice.get(`/_matrix/client/v3/profile/${enc(user.userId)}/m.tz`);
      assert.equal(field.status, 404);
      assert.equal(await membership(roomId, user.userId), 'leave');
    });

    it("the admin API's erase deletes custom fields too", async () => {
      const admin = await server.user('dz_admin', { admin: true });
      const { user } = await prepared('dz_admin_erased');
      const res = await admin.post(`/_synapse/admin/v1/deactivate/${enc(user.userId)}`, { erase: true });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(await rows('profile_fields', user.userId), 0);
      assert.equal(await rows('account_data', user.userId), 0);
    });

    it('a guest reads custom profile fields', async () => {
      const bob = await server.user('dz_bob');
      await setField(bob, 'org.example.pet', 'cat');
      const reg = await server.client().post('/_matrix/client/v3/register?kind=guest', {});
      assert.equal(reg.status, 200, JSON.stringify(reg.body));
      const guest = server.client(reg.body.access_token as string);
      const res = await guest.get(`/_matrix/client/v3/profile/${enc(bob.userId)}/org.example.pet`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { 'org.example.pet': 'cat' });
      // Guests still may not change them.
      const put = await guest.put(
        `/_matrix/client/v3/profile/${enc(reg.body.user_id as string)}/org.example.pet`,
        {
          'org.example.pet': 'dog',
        },
      );
      assert.equal(put.status, 403);
    });
  });
}
