/**
 * GET /_matrix/client/v1/mutual_rooms (v1.19) over real HTTP: only rooms both users are joined to (not invited, not
 * left), ordered batches through `from` tokens, self and malformed ids refused, unknown users share nothing, and the
 * unstable MSC2666 path. Bodies are checked against mutual_rooms.yaml.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mutualRooms } from '../../src/storage/mutual-rooms.js';
import { ENGINES } from '../helpers/engines.js';
import { responseProblems } from '../helpers/openapi-shape.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string };
const enc = encodeURIComponent;

async function mutual(c: Client, userId: string, from?: string): Promise<Json> {
  const qs = `user_id=${enc(userId)}${from === undefined ? '' : `&from=${enc(from)}`}`;
  const res = await c.get(`/_matrix/client/v1/mutual_rooms?${qs}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(responseProblems('mutual_rooms.yaml', '/mutual_rooms', 'get', 200, res.body), []);
  return res.body;
}

for (const engine of ENGINES) {
  describe(`${engine}: GET /mutual_rooms`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    const shared: string[] = [];

    const createRoom = async (c: Client): Promise<string> => {
      const res = await c.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.room_id as string;
    };
    const join = async (c: Client, roomId: string): Promise<void> => {
      const res = await c.post(`/_matrix/client/v3/join/${enc(roomId)}`, {});
      assert.equal(res.status, 200, JSON.stringify(res.body));
    };

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('mut_alice');
      bob = await server.user('mut_bob');
      carol = await server.user('mut_carol');
      for (let i = 0; i < 3; i++) {
        const room = await createRoom(alice);
        await join(bob, room);
        shared.push(room);
      }
      shared.sort();
      // Alone, invited only, and left: none of these is mutual.
      await createRoom(alice);
      const invited = await createRoom(alice);
      const inv = await alice.post(`/_matrix/client/v3/rooms/${enc(invited)}/invite`, {
        user_id: bob.userId,
      });
      assert.equal(inv.status, 200);
      const left = await createRoom(alice);
      await join(bob, left);
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${enc(left)}/leave`, {})).status, 200);
    });
    after(() => server.close());

    it('lists the rooms both users are joined to, from either side', async () => {
      const body = await mutual(alice, bob.userId);
      assert.deepEqual(body.joined, shared);
      assert.equal(body.count, 3);
      assert.equal('next_batch' in body, false);
      assert.deepEqual((await mutual(bob, alice.userId)).joined, shared);
      const unstable = await alice.get(
        `/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms?user_id=${enc(bob.userId)}`,
      );
      assert.deepEqual(unstable.body.joined, shared);
    });

    it('pages in room id order: a `from` token continues after its room', async () => {
      const page = await mutualRooms(server.hs.storage.db, alice.userId, bob.userId, undefined, 2);
      assert.deepEqual(page.roomIds, shared.slice(0, 2));
      assert.equal(page.count, 3);
      const rest = await mutualRooms(server.hs.storage.db, alice.userId, bob.userId, shared[1], 2);
      assert.deepEqual(rest.roomIds, shared.slice(2));
      // Over HTTP: the token is the last room id of the batch before (opaque to clients).
      const token = Buffer.from(shared[0] as string, 'utf8').toString('base64url');
      const next = await mutual(alice, bob.userId, token);
      assert.deepEqual(next.joined, shared.slice(1));
      assert.equal(next.count, 3, 'the count is the total, not the batch');
    });

    it('unknown and unrelated users share nothing', async () => {
      assert.deepEqual(await mutual(alice, `@ghost:${server.serverName}`), { joined: [], count: 0 });
      assert.deepEqual(await mutual(alice, '@far:elsewhere.example'), { joined: [], count: 0 });
      assert.deepEqual((await mutual(alice, carol.userId)).joined, []);
    });

    it('refuses the own user id, a missing or non-compliant user id and a bad token', async () => {
      const cases = [
        `user_id=${enc(alice.userId)}`,
        '',
        `user_id=${enc('@Bad User:x')}`,
        `user_id=${enc(bob.userId)}&from=nonsense`,
      ];
      for (const qs of cases) {
        const res = await alice.get(`/_matrix/client/v1/mutual_rooms?${qs}`);
        assert.equal(res.status, 400, `${qs}: ${JSON.stringify(res.body)}`);
        assert.match(String(res.body.errcode), /^M_(INVALID|MISSING)_PARAM$/);
      }
      const anon = await alice.get(`/_matrix/client/v1/mutual_rooms?user_id=${enc(bob.userId)}`, {
        token: null,
      });
      assert.equal(anon.status, 401);
    });
  });
}
