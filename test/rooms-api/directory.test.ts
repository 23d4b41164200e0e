import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const enc = encodeURIComponent;
const aliasPath = (alias: string) => `/_matrix/client/v3/directory/room/${enc(alias)}`;
const listPath = (roomId: string) => `/_matrix/client/v3/directory/list/room/${enc(roomId)}`;

async function room(c: Client, body: Record<string, unknown> = {}): Promise<string> {
  const res = await c.post('/_matrix/client/v3/createRoom', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

function expectError(
  res: { status: number; body: Record<string, unknown> },
  status: number,
  errcode: string,
) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.errcode, errcode);
}

for (const engine of ENGINES) {
  describe(`${engine}: room aliases`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('creates, resolves, lists and deletes an alias', async () => {
      const alice = await server.user('alice');
      const roomId = await room(alice, { preset: 'public_chat' });
      const put = await alice.put(aliasPath('#cats:test.local'), { room_id: roomId });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual(put.body, {});

      const anon = server.client();
      const got = await anon.get(aliasPath('#cats:test.local'));
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, { room_id: roomId, servers: ['test.local'] });

      const listed = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/aliases`);
      assert.equal(listed.status, 200);
      assert.deepEqual(listed.body, { aliases: ['#cats:test.local'] });

      const del = await alice.delete(aliasPath('#cats:test.local'));
      assert.equal(del.status, 200, JSON.stringify(del.body));
      expectError(await anon.get(aliasPath('#cats:test.local')), 404, 'M_NOT_FOUND');
      expectError(await alice.delete(aliasPath('#cats:test.local')), 404, 'M_NOT_FOUND');
    });

    it('rejects taken, invalid and remote aliases, and non-members', async () => {
      const bob = await server.user('bob');
      const eve = await server.user('eve');
      const roomId = await room(bob);
      assert.equal((await bob.put(aliasPath('#dogs:test.local'), { room_id: roomId })).status, 200);
      expectError(await bob.put(aliasPath('#dogs:test.local'), { room_id: roomId }), 409, 'M_UNKNOWN');
      expectError(await bob.put(aliasPath('dogs:test.local'), { room_id: roomId }), 400, 'M_INVALID_PARAM');
      expectError(
        await bob.put(aliasPath('#dogs:other.example'), { room_id: roomId }),
        400,
        'M_INVALID_PARAM',
      );
      expectError(await bob.put(aliasPath('#x:test.local'), {}), 400, 'M_MISSING_PARAM');
      expectError(await eve.put(aliasPath('#eve:test.local'), { room_id: roomId }), 403, 'M_FORBIDDEN');
      expectError(
        await bob.put(aliasPath('#ghost:test.local'), { room_id: '!nope:test.local' }),
        404,
        'M_NOT_FOUND',
      );
      expectError(await server.client().get(aliasPath('not-an-alias')), 400, 'M_INVALID_PARAM');
      // Another server's alias is asked of that server (federation /query/directory); it cannot be reached.
      expectError(await server.client().get(aliasPath('#x:other.example')), 502, 'M_UNKNOWN');
      expectError(
        await server.client().put(aliasPath('#y:test.local'), { room_id: roomId }),
        401,
        'M_MISSING_TOKEN',
      );
    });

    it('lets the alias creator, a moderator or an admin delete, and nobody else', async () => {
      const owner = await server.user('owner');
      const member = await server.user('member');
      const admin = await server.user('root', { admin: true });
      const roomId = await room(owner, { preset: 'public_chat' });
      const rid = enc(roomId);
      assert.equal((await member.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);

      // A plain member creates an alias; the moderator (room creator) may delete it.
      assert.equal((await member.put(aliasPath('#m1:test.local'), { room_id: roomId })).status, 200);
      assert.equal((await owner.delete(aliasPath('#m1:test.local'))).status, 200);

      // The moderator's alias cannot be deleted by a plain member; an admin may.
      assert.equal((await owner.put(aliasPath('#o1:test.local'), { room_id: roomId })).status, 200);
      expectError(await member.delete(aliasPath('#o1:test.local')), 403, 'M_FORBIDDEN');
      assert.equal((await admin.delete(aliasPath('#o1:test.local'))).status, 200);

      // The creator of an alias may delete it even when they may not edit m.room.canonical_alias (Synapse);
      // a moderator's delete also takes the alias out of the canonical alias event.
      assert.equal((await member.put(aliasPath('#m2:test.local'), { room_id: roomId })).status, 200);
      assert.equal((await owner.put(aliasPath('#o2:test.local'), { room_id: roomId })).status, 200);
      const setCanonical = await owner.put(`/_matrix/client/v3/rooms/${rid}/state/m.room.canonical_alias`, {
        alias: '#o2:test.local',
        alt_aliases: ['#m2:test.local', '#o2:test.local'],
      });
      assert.equal(setCanonical.status, 200, JSON.stringify(setCanonical.body));
      assert.equal((await member.delete(aliasPath('#m2:test.local'))).status, 200);
      expectError(await member.get(aliasPath('#m2:test.local')), 404, 'M_NOT_FOUND');
      assert.equal((await owner.delete(aliasPath('#o2:test.local'))).status, 200);
      const canonical = await owner.get(`/_matrix/client/v3/rooms/${rid}/state/m.room.canonical_alias`);
      assert.equal(canonical.status, 200);
      assert.deepEqual(canonical.body, { alt_aliases: ['#m2:test.local'] });
    });

    it('lists aliases for members and world-readable rooms only', async () => {
      const carol = await server.user('carol');
      const dan = await server.user('dan');
      const admin = await server.user('root2', { admin: true });
      const secret = await room(carol);
      assert.equal((await carol.put(aliasPath('#secret:test.local'), { room_id: secret })).status, 200);
      expectError(await dan.get(`/_matrix/client/v3/rooms/${enc(secret)}/aliases`), 403, 'M_FORBIDDEN');
      expectError(
        await dan.get(`/_matrix/client/v3/rooms/${enc('!none:test.local')}/aliases`),
        403,
        'M_FORBIDDEN',
      );
      const asAdmin = await admin.get(`/_matrix/client/v3/rooms/${enc(secret)}/aliases`);
      assert.deepEqual(asAdmin.body, { aliases: ['#secret:test.local'] });

      const open = await room(carol, {
        initial_state: [
          { type: 'm.room.history_visibility', content: { history_visibility: 'world_readable' } },
        ],
      });
      const res = await dan.get(`/_matrix/client/v3/rooms/${enc(open)}/aliases`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { aliases: [] });
    });
  });

  describe(`${engine}: room directory`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('gets and sets the visibility of a room', async () => {
      const alice = await server.user('alice');
      const bob = await server.user('bob');
      const roomId = await room(alice, { preset: 'public_chat' });
      const anon = server.client();
      assert.deepEqual((await anon.get(listPath(roomId))).body, { visibility: 'private' });
      assert.equal((await alice.put(listPath(roomId), { visibility: 'public' })).status, 200);
      assert.deepEqual((await anon.get(listPath(roomId))).body, { visibility: 'public' });

      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {})).status, 200);
      expectError(await bob.put(listPath(roomId), { visibility: 'private' }), 403, 'M_FORBIDDEN');
      const stranger = await server.user('stranger');
      expectError(await stranger.put(listPath(roomId), { visibility: 'private' }), 403, 'M_FORBIDDEN');
      expectError(await alice.put(listPath(roomId), { visibility: 'hidden' }), 400, 'M_BAD_JSON');
      expectError(await anon.get(listPath('!nope:test.local')), 404, 'M_NOT_FOUND');
      expectError(
        await alice.put(listPath('!nope:test.local'), { visibility: 'public' }),
        404,
        'M_NOT_FOUND',
      );
      assert.equal((await alice.put(listPath(roomId), { visibility: 'private' })).status, 200);
      assert.deepEqual((await anon.get(listPath(roomId))).body, { visibility: 'private' });
    });

    it('lists, searches and pages public rooms, largest first', async () => {
      const [u1, u2, u3, u4] = [
        await server.user('p1'),
        await server.user('p2'),
        await server.user('p3'),
        await server.user('p4'),
      ];
      const big = await room(u1, {
        visibility: 'public',
        preset: 'public_chat',
        name: 'Big Hall',
        topic: 'Everyone welcome',
        room_alias_name: 'hall',
      });
      for (const u of [u2, u3, u4]) {
        assert.equal((await u.post(`/_matrix/client/v3/rooms/${enc(big)}/join`, {})).status, 200);
      }
      const mid = await room(u2, { visibility: 'public', preset: 'public_chat', name: 'Knitting circle' });
      assert.equal((await u3.post(`/_matrix/client/v3/rooms/${enc(mid)}/join`, {})).status, 200);
      const small = await room(u3, {
        visibility: 'public',
        preset: 'public_chat',
        topic: 'Gardening tips',
        creation_content: { type: 'm.space' },
      });
      // Published but invite-only: not listed (as Synapse).
      await room(u4, { visibility: 'public', preset: 'private_chat', name: 'Hidden' });
      // Not published.
      await room(u4, { preset: 'public_chat', name: 'Unlisted' });

      const anon = server.client();
      const all = await anon.get('/_matrix/client/v3/publicRooms');
      assert.equal(all.status, 200, JSON.stringify(all.body));
      const chunk = all.body.chunk as Record<string, unknown>[];
      assert.deepEqual(
        chunk.map((r) => r.room_id),
        [big, mid, small],
      );
      assert.equal(all.body.total_room_count_estimate, 3);
      assert.deepEqual(chunk[0], {
        room_id: big,
        name: 'Big Hall',
        topic: 'Everyone welcome',
        canonical_alias: '#hall:test.local',
        num_joined_members: 4,
        world_readable: false,
        guest_can_join: false,
        join_rule: 'public',
      });
      assert.equal(chunk[2]?.room_type, 'm.space');

      // Paging forwards and back.
      const p1 = await anon.get('/_matrix/client/v3/publicRooms?limit=2');
      assert.deepEqual(
        (p1.body.chunk as { room_id: string }[]).map((r) => r.room_id),
        [big, mid],
      );
      assert.equal(p1.body.prev_batch, undefined);
      assert.equal(typeof p1.body.next_batch, 'string');
      const p2 = await anon.get(
        `/_matrix/client/v3/publicRooms?limit=2&since=${enc(p1.body.next_batch as string)}`,
      );
      assert.deepEqual(
        (p2.body.chunk as { room_id: string }[]).map((r) => r.room_id),
        [small],
      );
      assert.equal(p2.body.next_batch, undefined);
      const back = await u1.post('/_matrix/client/v3/publicRooms', { limit: 1, since: p2.body.prev_batch });
      assert.deepEqual(
        (back.body.chunk as { room_id: string }[]).map((r) => r.room_id),
        [mid],
      );
      assert.equal(typeof back.body.prev_batch, 'string');
      assert.equal(typeof back.body.next_batch, 'string');

      // Search over name, topic and alias, case-insensitively.
      const search = async (term: string) => {
        const res = await u1.post('/_matrix/client/v3/publicRooms', {
          filter: { generic_search_term: term },
          include_all_networks: true,
        });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return (res.body.chunk as { room_id: string }[]).map((r) => r.room_id);
      };
      assert.deepEqual(await search('knit'), [mid]);
      assert.deepEqual(await search('GARDEN'), [small]);
      assert.deepEqual(await search('#hall'), [big]);
      assert.deepEqual(await search('nothing matches'), []);
      const spaces = await u1.post('/_matrix/client/v3/publicRooms', { filter: { room_types: ['m.space'] } });
      assert.deepEqual(
        (spaces.body.chunk as { room_id: string }[]).map((r) => r.room_id),
        [small],
      );
      const plain = await u1.post('/_matrix/client/v3/publicRooms', { filter: { room_types: [null] } });
      assert.deepEqual(
        (plain.body.chunk as { room_id: string }[]).map((r) => r.room_id),
        [big, mid],
      );
    });

    it('rejects malformed tokens and limits, and POST without a token', async () => {
      const u = await server.user('tok');
      const anon = server.client();
      expectError(await anon.get('/_matrix/client/v3/publicRooms?since=garbage'), 400, 'M_INVALID_PARAM');
      expectError(await u.post('/_matrix/client/v3/publicRooms', { since: 'e30' }), 400, 'M_INVALID_PARAM');
      expectError(await anon.get('/_matrix/client/v3/publicRooms?limit=abc'), 400, 'M_INVALID_PARAM');
      expectError(await anon.post('/_matrix/client/v3/publicRooms', {}), 401, 'M_MISSING_TOKEN');
      expectError(
        await anon.get('/_matrix/client/v3/publicRooms', { token: 'bogus' }),
        401,
        'M_UNKNOWN_TOKEN',
      );
      // Another server's directory is asked over federation (test/federation/directory.test.ts); a name that is
      // not a server name is refused here.
      expectError(
        await anon.get('/_matrix/client/v3/publicRooms?server=not%20a%20server'),
        400,
        'M_INVALID_PARAM',
      );
    });
  });
}
