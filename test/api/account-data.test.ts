import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { listAccountDataSince } from '../../src/storage/account-data.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const ROOM = '!room:test.local';
const V12_ROOM = `!${'A'.repeat(40)}b_-`;

for (const engine of ENGINES) {
  describe(`${engine}: account data`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let bob: Client & { userId: string };
    const global = (userId: string, type: string): string =>
      `/_matrix/client/v3/user/${userId}/account_data/${type}`;
    const room = (userId: string, roomId: string, type: string): string =>
      `/_matrix/client/v3/user/${userId}/rooms/${encodeURIComponent(roomId)}/account_data/${type}`;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
    });
    after(() => server.close());

    it('stores global account data and reads it back', async () => {
      const content = { theme: 'dark', nested: { list: [1, 2, 3] } };
      const put = await alice.put(global(alice.userId, 'org.example.config'), content);
      assert.equal(put.status, 200);
      assert.deepEqual(put.body, {});
      const get = await alice.get(global(alice.userId, 'org.example.config'));
      assert.equal(get.status, 200);
      assert.deepEqual(get.body, content);
    });

    it('overwrites earlier content', async () => {
      await alice.put(global(alice.userId, 'org.example.over'), { v: 1 });
      await alice.put(global(alice.userId, 'org.example.over'), { v: 2 });
      assert.deepEqual((await alice.get(global(alice.userId, 'org.example.over'))).body, { v: 2 });
    });

    it('stamps each write with a new stream position for /sync', async () => {
      const { stream, db } = server.hs.storage;
      const start = stream.current;
      await alice.put(global(alice.userId, 'org.example.stream'), { n: 1 });
      await alice.put(room(alice.userId, ROOM, 'org.example.stream'), { n: 2 });
      assert.equal(stream.current, start + 2);
      const rows = await listAccountDataSince(db, alice.userId, start, stream.current);
      assert.deepEqual(
        rows.map((r) => [r.room_id, r.type, JSON.parse(r.content), r.stream_pos]),
        [
          ['', 'org.example.stream', { n: 1 }, start + 1],
          [ROOM, 'org.example.stream', { n: 2 }, start + 2],
        ],
      );
    });

    it('answers 404 M_NOT_FOUND for an unset type', async () => {
      for (const path of [
        global(alice.userId, 'org.example.unset'),
        room(alice.userId, ROOM, 'org.example.unset'),
      ]) {
        const res = await alice.get(path);
        assert.equal(res.status, 404);
        assert.equal(res.body.errcode, 'M_NOT_FOUND');
      }
    });

    it("keeps each user's data private", async () => {
      await bob.put(global(bob.userId, 'org.example.secret'), { pin: 1234 });
      for (const res of [
        await alice.get(global(bob.userId, 'org.example.secret')),
        await alice.put(global(bob.userId, 'org.example.secret'), { pin: 0 }),
        await alice.get(room(bob.userId, ROOM, 'org.example.secret')),
        await alice.put(room(bob.userId, ROOM, 'org.example.secret'), { pin: 0 }),
      ]) {
        assert.equal(res.status, 403);
        assert.equal(res.body.errcode, 'M_FORBIDDEN');
      }
      assert.equal((await alice.get(global(alice.userId, 'org.example.secret'))).status, 404);
      assert.deepEqual((await bob.get(global(bob.userId, 'org.example.secret'))).body, { pin: 1234 });
    });

    it('requires a token', async () => {
      const res = await server.client().get(global(alice.userId, 'org.example.config'));
      assert.equal(res.status, 401);
      assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
    });

    it('refuses server-managed types with 405 M_BAD_JSON', async () => {
      for (const type of ['m.fully_read', 'm.push_rules']) {
        for (const path of [global(alice.userId, type), room(alice.userId, ROOM, type)]) {
          const res = await alice.put(path, { event_id: '$x' });
          assert.equal(res.status, 405, path);
          assert.equal(res.body.errcode, 'M_BAD_JSON');
        }
      }
    });

    it('serves m.push_rules with the server-default rules', async () => {
      const res = await alice.get(global(alice.userId, 'm.push_rules'));
      assert.equal(res.status, 200);
      const ruleset = res.body.global as Record<string, { rule_id: string }[]>;
      assert.equal(ruleset.override?.[0]?.rule_id, '.m.rule.master');
      assert.ok(ruleset.underride?.some((r) => r.rule_id === '.m.rule.message'));
    });

    it('rejects a body that is not a JSON object with M_NOT_JSON', async () => {
      for (const raw of ['[1,2]', '"text"', '{nope']) {
        const res = await alice.request('PUT', global(alice.userId, 'org.example.bad'), undefined, { raw });
        assert.equal(res.status, 400, raw);
        assert.equal(res.body.errcode, 'M_NOT_JSON');
      }
      const empty = await alice.request('PUT', global(alice.userId, 'org.example.bad'));
      assert.equal(empty.status, 400);
      assert.equal(empty.body.errcode, 'M_NOT_JSON');
      assert.equal((await alice.get(global(alice.userId, 'org.example.bad'))).status, 404);
    });

    it('stores room account data apart from global account data and other rooms', async () => {
      const tags = { tags: { 'm.favourite': { order: 0.5 } } };
      const put = await alice.put(room(alice.userId, ROOM, 'm.tag'), tags);
      assert.equal(put.status, 200);
      assert.deepEqual((await alice.get(room(alice.userId, ROOM, 'm.tag'))).body, tags);
      assert.equal((await alice.get(global(alice.userId, 'm.tag'))).status, 404);
      assert.equal((await alice.get(room(alice.userId, '!other:test.local', 'm.tag'))).status, 404);
    });

    it('accepts room version 12 room IDs', async () => {
      assert.equal((await alice.put(room(alice.userId, V12_ROOM, 'org.example.v12'), { a: 1 })).status, 200);
      assert.deepEqual((await alice.get(room(alice.userId, V12_ROOM, 'org.example.v12'))).body, { a: 1 });
    });

    it('rejects malformed room IDs with M_INVALID_PARAM', async () => {
      for (const roomId of ['@notaroom:test.local', 'room:test.local', '!short']) {
        for (const res of [
          await alice.put(room(alice.userId, roomId, 'org.example.x'), { a: 1 }),
          await alice.get(room(alice.userId, roomId, 'org.example.x')),
        ]) {
          assert.equal(res.status, 400, roomId);
          assert.equal(res.body.errcode, 'M_INVALID_PARAM');
        }
      }
    });
  });
}
