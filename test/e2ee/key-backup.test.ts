/** Server-side key backup: versions, keys with etag and count, the replacement rule, on every engine. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { ok } from './helpers.js';

const key = (first: number, forwarded: number, verified: boolean, tag: string): Json => ({
  first_message_index: first,
  forwarded_count: forwarded,
  is_verified: verified,
  session_data: { ciphertext: tag, ephemeral: 'e', mac: 'm' },
});

for (const engine of ENGINES) {
  describe(`${engine}: key backup`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('manages versions and keys', async () => {
      const alice = await server.user('b_alice');
      const R = '!room:test.local';
      const r = encodeURIComponent(R);
      let res = await alice.get('/_matrix/client/v3/room_keys/version');
      assert.equal(res.status, 404);
      assert.equal(res.body.errcode, 'M_NOT_FOUND');
      res = await alice.post('/_matrix/client/v3/room_keys/version', { auth_data: {} });
      assert.equal(res.status, 400);
      const algorithm = 'm.megolm_backup.v1.curve25519-aes-sha2';
      const v1 = (
        await ok(
          alice.post('/_matrix/client/v3/room_keys/version', { algorithm, auth_data: { public_key: 'a' } }),
        )
      ).version as string;
      assert.equal(v1, '1');
      const info = await ok(alice.get('/_matrix/client/v3/room_keys/version'));
      assert.deepEqual(info, {
        algorithm,
        auth_data: { public_key: 'a' },
        version: '1',
        count: 0,
        etag: '0',
      });

      res = await alice.put(`/_matrix/client/v3/room_keys/keys?version=9`, { rooms: {} });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_WRONG_ROOM_KEYS_VERSION');
      assert.equal(res.body.current_version, '1');
      res = await alice.put(`/_matrix/client/v3/room_keys/keys/${r}/s1?version=1`, {
        first_message_index: 0,
      });
      assert.equal(res.status, 400);

      let put = await ok(
        alice.put(`/_matrix/client/v3/room_keys/keys?version=1`, {
          rooms: { [R]: { sessions: { s1: key(5, 1, false, 'a'), s2: key(0, 0, false, 'b') } } },
        }),
      );
      assert.deepEqual(put, { etag: '1', count: 2 });
      // Worse keys do not replace better ones; better ones do (verified, then index, then forwarded count).
      put = await ok(
        alice.put(`/_matrix/client/v3/room_keys/keys/${r}/s1?version=1`, key(6, 0, false, 'worse')),
      );
      assert.deepEqual(put, { etag: '1', count: 2 });
      put = await ok(
        alice.put(`/_matrix/client/v3/room_keys/keys/${r}/s1?version=1`, key(5, 0, false, 'fewer-fwd')),
      );
      assert.deepEqual(put, { etag: '2', count: 2 });
      await ok(
        alice.put(`/_matrix/client/v3/room_keys/keys/${r}/s1?version=1`, key(2, 0, false, 'lower-index')),
      );
      await ok(alice.put(`/_matrix/client/v3/room_keys/keys/${r}/s1?version=1`, key(9, 9, true, 'verified')));
      await ok(
        alice.put(`/_matrix/client/v3/room_keys/keys/${r}/s1?version=1`, key(0, 0, false, 'unverified')),
      );
      const s1 = await ok(alice.get(`/_matrix/client/v3/room_keys/keys/${r}/s1?version=1`));
      assert.equal((s1.session_data as Json).ciphertext, 'verified');
      await ok(
        alice.put(`/_matrix/client/v3/room_keys/keys/${r}?version=1`, {
          sessions: { s3: key(0, 0, true, 'c') },
        }),
      );
      const all = await ok(alice.get('/_matrix/client/v3/room_keys/keys?version=1'));
      assert.deepEqual(Object.keys(((all.rooms as Json)[R] as { sessions: Json }).sessions), [
        's1',
        's2',
        's3',
      ]);
      const room = await ok(alice.get(`/_matrix/client/v3/room_keys/keys/${r}?version=1`));
      assert.equal(Object.keys(room.sessions as Json).length, 3);
      assert.deepEqual(
        await ok(alice.get(`/_matrix/client/v3/room_keys/keys/${encodeURIComponent('!other:x')}?version=1`)),
        { sessions: {} },
      );
      res = await alice.get(`/_matrix/client/v3/room_keys/keys/${r}/nope?version=1`);
      assert.equal(res.status, 404);
      res = await alice.get(`/_matrix/client/v3/room_keys/keys?version=7`);
      assert.equal(res.status, 404);

      const before = await ok(alice.get('/_matrix/client/v3/room_keys/version/1'));
      const del = await ok(alice.delete(`/_matrix/client/v3/room_keys/keys/${r}/s2?version=1`));
      assert.deepEqual(del, { etag: String(Number(before.etag) + 1), count: 2 });

      // Updating a version: same algorithm, matching version.
      res = await alice.put('/_matrix/client/v3/room_keys/version/1', { algorithm: 'other', auth_data: {} });
      assert.equal(res.status, 400);
      res = await alice.put('/_matrix/client/v3/room_keys/version/1', {
        algorithm,
        auth_data: {},
        version: '2',
      });
      assert.equal(res.status, 400);
      res = await alice.put('/_matrix/client/v3/room_keys/version/5', { algorithm, auth_data: {} });
      assert.equal(res.status, 404);
      await ok(
        alice.put('/_matrix/client/v3/room_keys/version/1', { algorithm, auth_data: { public_key: 'b' } }),
      );

      // A new version becomes current; writes to the old one are refused; deleting a version removes it.
      const v2 = (await ok(alice.post('/_matrix/client/v3/room_keys/version', { algorithm, auth_data: {} })))
        .version;
      assert.equal(v2, '2');
      res = await alice.put(`/_matrix/client/v3/room_keys/keys/${r}/s9?version=1`, key(0, 0, false, 'x'));
      assert.equal(res.status, 403);
      await ok(alice.delete('/_matrix/client/v3/room_keys/version/2'));
      assert.equal((await alice.get('/_matrix/client/v3/room_keys/version/2')).status, 404);
      assert.equal((await ok(alice.get('/_matrix/client/v3/room_keys/version'))).version, '1');
      assert.equal((await alice.delete('/_matrix/client/v3/room_keys/version/2')).status, 404);
      const other = await server.user('b_other');
      assert.equal((await other.get('/_matrix/client/v3/room_keys/version/1')).status, 404);
    });
  });
}
