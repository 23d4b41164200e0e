import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const enc = encodeURIComponent;
const SEARCH = '/_matrix/client/v3/user_directory/search';

async function search(
  c: Client,
  term: string,
  limit?: number,
): Promise<{ ids: string[]; body: Record<string, unknown> }> {
  const res = await c.post(
    SEARCH,
    limit === undefined ? { search_term: term } : { search_term: term, limit },
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const results = res.body.results as { user_id: string }[];
  return { ids: results.map((r) => r.user_id).sort(), body: res.body };
}

for (const engine of ENGINES) {
  describe(`${engine}: user directory`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('finds users sharing a room, users in public rooms and oneself, never strangers', async () => {
      const [searcher, friend, publicUser, stranger, gone] = [
        await server.user('zed'),
        await server.user('zara'),
        await server.user('zoe'),
        await server.user('zack'),
        await server.user('zelda'),
      ];
      // A private room shared with the friend.
      const priv = (await searcher.post('/_matrix/client/v3/createRoom', { invite: [friend.userId] })).body
        .room_id as string;
      assert.equal((await friend.post(`/_matrix/client/v3/rooms/${enc(priv)}/join`, {})).status, 200);
      // A public room the searcher is not in.
      await publicUser.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      // A private room of a stranger.
      await stranger.post('/_matrix/client/v3/createRoom', { preset: 'private_chat' });
      // A deactivated user in a public room.
      await gone.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      await server.hs.storage.db
        .updateTable('users')
        .set({ deactivated: 1 })
        .where('user_id', '=', gone.userId)
        .execute();

      const { ids, body } = await search(searcher, 'z');
      assert.deepEqual(ids, [searcher.userId, friend.userId, publicUser.userId].sort());
      assert.equal(body.limited, false);
      // The stranger sees public-room users and themself, not the private room's members.
      assert.deepEqual((await search(stranger, 'z')).ids, [stranger.userId, publicUser.userId].sort());
    });

    it('matches user ids and display names case-insensitively by word prefix', async () => {
      const a = await server.user('searcher2');
      const b = await server.user('bobby');
      await b.put(`/_matrix/client/v3/profile/${enc(b.userId)}/displayname`, {
        displayname: 'Robert Tables',
      });
      await b.put(`/_matrix/client/v3/profile/${enc(b.userId)}/avatar_url`, {
        avatar_url: 'mxc://test.local/b',
      });
      const roomId = (await a.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
        .room_id as string;
      assert.equal((await b.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {})).status, 200);

      for (const term of ['ROB', 'tables', 'robert tab', 'bobby', '@bobby:test.local', 'BOB']) {
        const res = await a.post(SEARCH, { search_term: term });
        assert.deepEqual(
          res.body.results,
          [{ user_id: b.userId, display_name: 'Robert Tables', avatar_url: 'mxc://test.local/b' }],
          term,
        );
      }
      assert.deepEqual((await search(a, 'obert')).ids, [], 'word prefixes, not infixes');
      assert.deepEqual((await search(a, 'robert nobody')).ids, [], 'every word must match');
    });

    it('applies the limit and reports limited', async () => {
      const users: Client[] = [];
      for (let i = 0; i < 4; i++) users.push(await server.user(`lim${i}`));
      const [owner, ...rest] = users as [Client, ...Client[]];
      const roomId = (await owner.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
        .room_id as string;
      for (const u of rest)
        assert.equal((await u.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {})).status, 200);
      const limited = await search(owner, 'lim', 2);
      assert.equal(limited.ids.length, 2);
      assert.equal(limited.body.limited, true);
      const all = await search(owner, 'lim');
      assert.equal(all.ids.length, 4);
      assert.equal(all.body.limited, false);
    });

    it('validates the request', async () => {
      const u = await server.user('validator');
      const missing = await u.post(SEARCH, {});
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
      const bad = await u.post(SEARCH, { search_term: 'x', limit: 'ten' });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.errcode, 'M_BAD_JSON');
      const anon = await server.client().post(SEARCH, { search_term: 'x' });
      assert.equal(anon.status, 401);
      assert.equal(anon.body.errcode, 'M_MISSING_TOKEN');
    });
  });
}
