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
      const v2 = (
        await ok(
          alice.post('/_matrix/client/v3/room_keys/version', { algorithm, auth_data: { public_key: 'c' } }),
        )
      ).version;
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

    it('checks auth_data as the algorithm needs: public_key for the spec algorithm, any JSON otherwise', async () => {
      const bob = await server.user('b_bob');
      const create = (body: Json) => bob.post('/_matrix/client/v3/room_keys/version', body);
      const spec = 'm.megolm_backup.v1.curve25519-aes-sha2';
      for (const [authData, errcode] of [
        [{}, 'M_MISSING_PARAM'],
        [{ public_key: 5 }, 'M_BAD_JSON'],
        [{ public_key: 'k', signatures: 'x' }, 'M_BAD_JSON'],
        ['opaque', 'M_BAD_JSON'],
        [undefined, 'M_MISSING_PARAM'],
      ] as const) {
        const res = await create({ algorithm: spec, auth_data: authData });
        assert.equal(res.status, 400, JSON.stringify(authData));
        assert.equal(res.body.errcode, errcode, JSON.stringify(authData));
      }
      // Signatures are optional; extra fields are kept.
      const signed = { public_key: 'k', signatures: { [bob.userId]: { 'ed25519:DEV': 'sig' } }, extra: [1] };
      const v = (await ok(create({ algorithm: spec, auth_data: signed }))).version as string;
      assert.deepEqual((await ok(bob.get(`/_matrix/client/v3/room_keys/version/${v}`))).auth_data, signed);
      assert.equal(
        (await ok(create({ algorithm: spec, auth_data: { public_key: 'k2' } }))).version,
        String(Number(v) + 1),
      );

      // SyTest (tests/41end-to-end-keys/07-backup.pl) backs up `m.megolm_backup.v1` with opaque strings.
      const opaque = (await ok(create({ algorithm: 'm.megolm_backup.v1', auth_data: 'anopaquestring' })))
        .version as string;
      let info = await ok(bob.get('/_matrix/client/v3/room_keys/version'));
      assert.equal(info.algorithm, 'm.megolm_backup.v1');
      assert.equal(info.auth_data, 'anopaquestring');
      assert.equal(info.version, opaque);
      await ok(
        bob.put(`/_matrix/client/v3/room_keys/version/${opaque}`, {
          algorithm: 'm.megolm_backup.v1',
          auth_data: 'adifferentopaquestring',
          version: opaque,
        }),
      );
      info = await ok(bob.get(`/_matrix/client/v3/room_keys/version/${opaque}`));
      assert.equal(info.auth_data, 'adifferentopaquestring');
      const path = `/_matrix/client/v3/room_keys/keys/${encodeURIComponent('!abcd')}/1234?version=${opaque}`;
      await ok(
        bob.put(path, {
          first_message_index: 3,
          forwarded_count: 0,
          is_verified: false,
          session_data: 'anopaquestring',
        }),
      );
      const got = await ok(bob.get(path));
      assert.deepEqual(got, {
        first_message_index: 3,
        forwarded_count: 0,
        is_verified: false,
        session_data: 'anopaquestring',
      });
      const missing = await bob.put(path, { first_message_index: 1, forwarded_count: 0, is_verified: false });
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
      for (const authData of [{ any: 'thing' }, 42, ['a'], null]) {
        await ok(create({ algorithm: 'org.example.custom', auth_data: authData }));
        assert.deepEqual((await ok(bob.get('/_matrix/client/v3/room_keys/version'))).auth_data, authData);
      }

      // The spec algorithm's keys still need an object session_data.
      const sv = (await ok(create({ algorithm: spec, auth_data: { public_key: 'k3' } }))).version as string;
      const bad = await bob.put(
        `/_matrix/client/v3/room_keys/keys/${encodeURIComponent('!r')}/s?version=${sv}`,
        {
          first_message_index: 0,
          forwarded_count: 0,
          is_verified: false,
          session_data: 'opaque',
        },
      );
      assert.equal(bad.status, 400);
      assert.equal(bad.body.errcode, 'M_BAD_JSON');
    });
  });
}
