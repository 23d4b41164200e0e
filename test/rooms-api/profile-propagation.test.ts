import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { RoomWriter, type NewEvent, type TxnKey } from '../../src/input/room-writer.js';
import { profilePropagation } from '../../src/roomsvc/profile-propagation.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const enc = encodeURIComponent;

async function member(c: Client, roomId: string, userId: string): Promise<Record<string, unknown>> {
  const res = await c.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

for (const engine of ENGINES) {
  describe(`${engine}: profile propagation`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('sends updated join events into every joined room, and none into others', async () => {
      const alice = await server.user('alice');
      const bob = await server.user('bob');
      const rooms: string[] = [];
      for (let i = 0; i < 2; i++) {
        const res = await bob.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
        rooms.push(res.body.room_id as string);
        assert.equal(
          (await alice.post(`/_matrix/client/v3/rooms/${enc(rooms[i] as string)}/join`, {})).status,
          200,
        );
      }
      const left = (await bob.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
        .room_id as string;
      assert.equal((await alice.post(`/_matrix/client/v3/rooms/${enc(left)}/join`, {})).status, 200);
      assert.equal((await alice.post(`/_matrix/client/v3/rooms/${enc(left)}/leave`, {})).status, 200);

      const me = enc(alice.userId);
      const name = await alice.put(`/_matrix/client/v3/profile/${me}/displayname`, {
        displayname: 'Alice A.',
      });
      assert.equal(name.status, 200, JSON.stringify(name.body));
      const avatar = await alice.put(`/_matrix/client/v3/profile/${me}/avatar_url`, {
        avatar_url: 'mxc://test.local/alice',
      });
      assert.equal(avatar.status, 200);
      for (const roomId of rooms) {
        assert.deepEqual(await member(bob, roomId, alice.userId), {
          membership: 'join',
          displayname: 'Alice A.',
          avatar_url: 'mxc://test.local/alice',
        });
      }
      assert.equal((await member(bob, left, alice.userId)).membership, 'leave', 'left rooms are untouched');

      // Removing the display name removes it from the member events, keeping the avatar.
      assert.equal((await alice.delete(`/_matrix/client/v3/profile/${me}/displayname`)).status, 200);
      assert.deepEqual(await member(bob, rooms[0] as string, alice.userId), {
        membership: 'join',
        avatar_url: 'mxc://test.local/alice',
      });
    });

    it('keeps going when one room refuses the update, and never throws', async () => {
      const carol = await server.user('carol');
      const dave = await server.user('dave');
      const rooms: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = (await dave.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
          .room_id as string;
        assert.equal((await carol.post(`/_matrix/client/v3/rooms/${enc(r)}/join`, {})).status, 200);
        rooms.push(r);
      }
      const [first, broken, last] = rooms as [string, string, string];
      class FailingWriter extends RoomWriter {
        override send(roomId: string, ev: NewEvent, txn?: TxnKey) {
          if (roomId === broken) return Promise.reject(new Error('disk on fire'));
          return super.send(roomId, ev, txn);
        }
      }
      // A second writer over the same database; the server's own (cached heads) is not used again in this suite.
      const writer = new FailingWriter(server.hs.storage, server.serverName, server.hs.signingKey);
      const warnings: unknown[] = [];
      const hook = profilePropagation({
        storage: server.hs.storage,
        writer,
        log: { warn: (obj: unknown) => void warnings.push(obj) },
      });
      await hook(carol.userId, { displayname: 'Carol', avatar_url: null });
      assert.equal(warnings.length, 1);
      assert.equal((await member(dave, first, carol.userId)).displayname, 'Carol');
      assert.equal((await member(dave, last, carol.userId)).displayname, 'Carol');
      assert.equal(
        (await member(dave, broken, carol.userId)).displayname,
        'carol',
        'the join from registration',
      );
    });
  });
}
