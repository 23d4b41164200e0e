/**
 * The group commit writes sends without reading their transaction ids first (room-writer.ts): a stored id is found
 * by the unique key of event_txn_ids and the group is planned again. A retry inside a burst of new sends is
 * answered with its first event while the others commit once each; a retry of a committed send that could no
 * longer be sent (the sender left the room) still gets its event, as when the ids were read first.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, post } from '../sync/sync-util.js';

function put(
  c: Client,
  roomId: string,
  txnId: string,
  body: string,
): Promise<{ status: number; body: Json }> {
  return c.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${txnId}`, {
    msgtype: 'm.text',
    body,
  });
}

async function bodiesIn(c: Client, roomId: string): Promise<string[]> {
  const res = await c.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=100`);
  assert.equal(res.status, 200);
  return (res.body.chunk as Json[])
    .filter((e) => e.type === 'm.room.message')
    .map((e) => (e.content as Json).body as string);
}

for (const engine of ENGINES) {
  describe(`${engine}: transaction id retries in the group commit`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let bob: Client & { userId: string };
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('tr_alice');
      bob = await server.user('tr_bob');
    });
    after(() => server.close());

    it('answers a retry inside a burst with its first event and commits the others once', async () => {
      const room = await createRoom(alice);
      const first = await put(alice, room, 'retry-1', 'original');
      assert.equal(first.status, 200);
      const burst = await Promise.all([
        ...Array.from({ length: 8 }, (_, i) => put(alice, room, `new-${i}`, `new ${i}`)),
        put(alice, room, 'retry-1', 'original'),
      ]);
      for (const r of burst) assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(burst[8]!.body.event_id, first.body.event_id);
      const bodies = await bodiesIn(alice, room);
      assert.equal(bodies.filter((b) => b === 'original').length, 1);
      for (let i = 0; i < 8; i++) assert.equal(bodies.filter((b) => b === `new ${i}`).length, 1);
      // A later new send still commits (the room's head was reloaded after the rolled-back attempt).
      assert.equal((await put(alice, room, 'after', 'after')).status, 200);
      assert.ok((await bodiesIn(alice, room)).includes('after'));
    });

    it('answers the retry of a committed send with its event after the sender left the room', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      const first = await put(bob, room, 'left-1', 'before leaving');
      assert.equal(first.status, 200);
      await post(bob, `/_matrix/client/v3/rooms/${enc(room)}/leave`);
      const retry = await put(bob, room, 'left-1', 'before leaving');
      assert.equal(retry.status, 200, JSON.stringify(retry.body));
      assert.equal(retry.body.event_id, first.body.event_id);
      // A new transaction id is refused as before.
      assert.equal((await put(bob, room, 'left-2', 'after leaving')).status, 403);
    });
  });
}
