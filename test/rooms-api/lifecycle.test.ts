import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

for (const engine of ENGINES) {
  describe(`${engine}: room lifecycle`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('creates rooms of versions 10, 11 and 12 and lets an invited user join, talk and leave', async () => {
      const alice = await server.user('alice');
      const bob = await server.user('bob');
      for (const version of ['10', '11', '12']) {
        const created = await alice.post('/_matrix/client/v3/createRoom', {
          room_version: version,
          name: `Room ${version}`,
          invite: [bob.userId],
        });
        assert.equal(created.status, 200, JSON.stringify(created.body));
        const roomId = created.body.room_id as string;
        assert.match(roomId, /^!/);
        if (version === '12')
          assert.ok(!roomId.includes(':'), 'v12 room ids are derived from the create event');
        const rid = encodeURIComponent(roomId);
        const joined = await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
        assert.equal(joined.status, 200, JSON.stringify(joined.body));
        const sent = await bob.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/t1`, {
          msgtype: 'm.text',
          body: 'hi',
        });
        assert.equal(sent.status, 200, JSON.stringify(sent.body));
        assert.match(sent.body.event_id as string, /^\$/);
        const again = await bob.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/t1`, {
          msgtype: 'm.text',
          body: 'hi',
        });
        assert.equal(again.body.event_id, sent.body.event_id, 'same txn id gives the same event');
        const rooms = await bob.get('/_matrix/client/v3/joined_rooms');
        assert.ok((rooms.body.joined_rooms as string[]).includes(roomId));
        const left = await bob.post(`/_matrix/client/v3/rooms/${rid}/leave`, {});
        assert.equal(left.status, 200);
        const denied = await bob.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/t2`, { body: 'x' });
        assert.equal(denied.status, 403);
        assert.equal(denied.body.errcode, 'M_FORBIDDEN');
      }
    });

    it('refuses a stranger joining an invite-only room with a readable reason', async () => {
      const carol = await server.user('carol');
      const dave = await server.user('dave');
      const created = await carol.post('/_matrix/client/v3/createRoom', { preset: 'private_chat' });
      const rid = encodeURIComponent(created.body.room_id as string);
      const res = await dave.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      assert.ok((res.body.error as string).length > 5);
    });

    it('rejects floats in content with M_BAD_JSON', async () => {
      const erin = await server.user('erin');
      const created = await erin.post('/_matrix/client/v3/createRoom', {});
      const rid = encodeURIComponent(created.body.room_id as string);
      const res = await erin.request(
        'PUT',
        `/_matrix/client/v3/rooms/${rid}/send/m.room.message/f1`,
        undefined,
        {
          raw: '{"body":"x","n":1.5}',
        },
      );
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_BAD_JSON');
    });

    it('refuses state keys over 255 bytes and filters over 64 KiB', async () => {
      const hal = await server.user('hal');
      const created = await hal.post('/_matrix/client/v3/createRoom', {});
      const rid = encodeURIComponent(created.body.room_id as string);
      const res = await hal.put(`/_matrix/client/v3/rooms/${rid}/state/org.example.x/${'k'.repeat(300)}`, {
        a: 1,
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_INVALID_PARAM');
      const big = await hal.post(`/_matrix/client/v3/user/${encodeURIComponent(hal.userId)}/filter`, {
        event_fields: Array.from({ length: 7000 }, (_, i) => `content.field${i}`),
      });
      assert.equal(big.status, 413);
      assert.equal(big.body.errcode, 'M_TOO_LARGE');
    });

    it('joins public rooms by alias', async () => {
      const frank = await server.user('frank');
      const gina = await server.user('gina');
      const created = await frank.post('/_matrix/client/v3/createRoom', {
        preset: 'public_chat',
        room_alias_name: 'lobby',
      });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const res = await gina.post(`/_matrix/client/v3/join/${encodeURIComponent('#lobby:test.local')}`, {});
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.room_id, created.body.room_id);
      const dup = await gina.post('/_matrix/client/v3/createRoom', { room_alias_name: 'lobby' });
      assert.equal(dup.status, 400);
      assert.equal(dup.body.errcode, 'M_ROOM_IN_USE');
    });
  });
}
