import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { listAccountDataSince } from '../../src/storage/account-data.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const ROOM = '!tagged:test.local';

for (const engine of ENGINES) {
  describe(`${engine}: room tags`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let bob: Client & { userId: string };
    const tags = (userId: string, roomId = ROOM): string =>
      `/_matrix/client/v3/user/${encodeURIComponent(userId)}/rooms/${encodeURIComponent(roomId)}/tags`;
    const tag = (userId: string, name: string, roomId = ROOM): string =>
      `${tags(userId, roomId)}/${encodeURIComponent(name)}`;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
    });
    after(() => server.close());

    it('starts with no tags', async () => {
      const res = await alice.get(tags(alice.userId));
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { tags: {} });
    });

    it('adds, lists, updates and removes tags', async () => {
      assert.equal((await alice.put(tag(alice.userId, 'm.favourite'), { order: 0.25 })).status, 200);
      assert.equal((await alice.put(tag(alice.userId, 'u.Work'), {})).status, 200);
      assert.equal((await alice.put(tag(alice.userId, '__proto__'), { order: 1 })).status, 200);
      // JSON.parse: in an object literal `__proto__` would set the prototype, not a key.
      const want: unknown = JSON.parse(
        '{"tags":{"m.favourite":{"order":0.25},"u.Work":{},"__proto__":{"order":1}}}',
      );
      assert.deepEqual((await alice.get(tags(alice.userId))).body, want);
      assert.equal((await alice.put(tag(alice.userId, 'm.favourite'), { order: 0 })).status, 200);
      const del = await alice.delete(tag(alice.userId, 'u.Work'));
      assert.equal(del.status, 200);
      assert.deepEqual(del.body, {});
      assert.equal((await alice.delete(tag(alice.userId, '__proto__'))).status, 200);
      assert.equal(
        (await alice.delete(tag(alice.userId, 'u.never-set'))).status,
        200,
        'deleting nothing is fine',
      );
      assert.deepEqual((await alice.get(tags(alice.userId))).body, { tags: { 'm.favourite': { order: 0 } } });
    });

    it('stores tags as the m.tag room account data that /sync reads', async () => {
      const since = server.hs.storage.stream.current;
      await alice.put(tag(alice.userId, 'm.lowpriority'), {}, undefined);
      const rows = await listAccountDataSince(
        server.hs.storage.db,
        alice.userId,
        since,
        server.hs.storage.stream.current,
      );
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.room_id, ROOM);
      assert.equal(rows[0]?.type, 'm.tag');
      assert.deepEqual(JSON.parse(rows[0]?.content ?? ''), {
        tags: { 'm.favourite': { order: 0 }, 'm.lowpriority': {} },
      });
      const viaAccountData = await alice.get(
        `/_matrix/client/v3/user/${alice.userId}/rooms/${encodeURIComponent(ROOM)}/account_data/m.tag`,
      );
      assert.deepEqual(viaAccountData.body, JSON.parse(rows[0]?.content ?? ''));
    });

    it('keeps tags per room and per user', async () => {
      const other = '!other:test.local';
      await alice.put(tag(alice.userId, 'u.elsewhere', other), {});
      assert.deepEqual((await alice.get(tags(alice.userId, other))).body, { tags: { 'u.elsewhere': {} } });
      assert.deepEqual((await bob.get(tags(bob.userId))).body, { tags: {} });
    });

    it('keeps concurrent additions', async () => {
      const room = '!busy:test.local';
      const names = Array.from({ length: 8 }, (_, i) => `u.t${i}`);
      await Promise.all(names.map((n) => alice.put(tag(alice.userId, n, room), {})));
      const got = (await alice.get(tags(alice.userId, room))).body.tags as Record<string, unknown>;
      assert.deepEqual(Object.keys(got).sort(), names);
    });

    it("refuses another user's tags with 403 M_FORBIDDEN", async () => {
      for (const res of [
        await bob.get(tags(alice.userId)),
        await bob.put(tag(alice.userId, 'u.x'), {}),
        await bob.delete(tag(alice.userId, 'm.favourite')),
      ]) {
        assert.equal(res.status, 403);
        assert.equal(res.body.errcode, 'M_FORBIDDEN');
      }
      assert.ok('m.favourite' in ((await alice.get(tags(alice.userId))).body.tags as object));
    });

    it('validates the room id, tag name and order', async () => {
      const badRoom = await alice.put(tag(alice.userId, 'u.x', 'not-a-room'), {});
      assert.equal(badRoom.status, 400);
      assert.equal(badRoom.body.errcode, 'M_INVALID_PARAM');
      const long = await alice.put(tag(alice.userId, `u.${'x'.repeat(254)}`), {});
      assert.equal(long.status, 400);
      assert.equal(long.body.errcode, 'M_INVALID_PARAM');
      for (const order of ['high', 2, -0.5]) {
        const res = await alice.put(tag(alice.userId, 'u.x'), { order });
        assert.equal(res.status, 400, String(order));
        assert.equal(res.body.errcode, 'M_BAD_JSON');
      }
      const notObject = await alice.request('PUT', tag(alice.userId, 'u.x'), undefined, { raw: '[1]' });
      assert.equal(notObject.status, 400);
      assert.equal(notObject.body.errcode, 'M_NOT_JSON');
    });
  });
}
