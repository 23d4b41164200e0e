import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const enc = encodeURIComponent;

async function send(c: Client, roomId: string, txn: string): Promise<string> {
  const res = await c.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${txn}`, {
    msgtype: 'm.text',
    body: 'hello',
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

for (const engine of ENGINES) {
  describe(`${engine}: reporting content`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    const reports = () =>
      server.hs.storage.db.selectFrom('event_reports').selectAll().orderBy('id').execute();

    it('stores event reports with reason and score', async () => {
      const alice = await server.user('alice');
      const bob = await server.user('bob');
      const roomId = (await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
        .room_id as string;
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {})).status, 200);
      const eventId = await send(alice, roomId, 'r1');
      const res = await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/report/${enc(eventId)}`, {
        reason: 'rude',
        score: -100,
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, {});
      const noReason = await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/report/${enc(eventId)}`, {});
      assert.equal(noReason.status, 200);
      const rows = await reports();
      assert.equal(rows.length, 2);
      assert.equal(rows[0]?.room_id, roomId);
      assert.equal(rows[0]?.event_id, eventId);
      assert.equal(rows[0]?.user_id, bob.userId);
      assert.equal(rows[0]?.reason, 'rude');
      assert.equal(Number(rows[0]?.score), -100);
      assert.equal(rows[1]?.reason, null);
    });

    it('answers 404 for unknown events, events of another room and events the reporter cannot see', async () => {
      const carol = await server.user('carol');
      const dave = await server.user('dave');
      const secret = (await carol.post('/_matrix/client/v3/createRoom', { preset: 'private_chat' })).body
        .room_id as string;
      const hidden = await send(carol, secret, 'h1');
      const other = (await carol.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
        .room_id as string;
      assert.equal((await dave.post(`/_matrix/client/v3/rooms/${enc(other)}/join`, {})).status, 200);
      const before = (await reports()).length;
      for (const [roomId, eventId] of [
        [secret, hidden], // not in the room
        [other, hidden], // the event is in another room
        [other, '$unknown'],
      ] as const) {
        const res = await dave.post(`/_matrix/client/v3/rooms/${enc(roomId)}/report/${enc(eventId)}`, {
          reason: 'x',
        });
        assert.equal(res.status, 404, JSON.stringify(res.body));
        assert.equal(res.body.errcode, 'M_NOT_FOUND');
      }
      // Joined users see history under `shared`, including events from before they joined.
      const older = await send(carol, other, 'o1');
      const res = await dave.post(`/_matrix/client/v3/rooms/${enc(other)}/report/${enc(older)}`, {});
      assert.equal(res.status, 200);
      // Under `joined` history, events from before one's join stay hidden.
      const strict = (
        await carol.post('/_matrix/client/v3/createRoom', {
          preset: 'public_chat',
          initial_state: [{ type: 'm.room.history_visibility', content: { history_visibility: 'joined' } }],
        })
      ).body.room_id as string;
      const early = await send(carol, strict, 'e1');
      assert.equal((await dave.post(`/_matrix/client/v3/rooms/${enc(strict)}/join`, {})).status, 200);
      const late = await send(carol, strict, 'e2');
      const hiddenRes = await dave.post(`/_matrix/client/v3/rooms/${enc(strict)}/report/${enc(early)}`, {});
      assert.equal(hiddenRes.status, 404);
      assert.equal(
        (await dave.post(`/_matrix/client/v3/rooms/${enc(strict)}/report/${enc(late)}`, {})).status,
        200,
      );
      assert.equal((await reports()).length, before + 2);
    });

    it('validates the body', async () => {
      const erin = await server.user('erin');
      const roomId = (await erin.post('/_matrix/client/v3/createRoom', {})).body.room_id as string;
      const eventId = await send(erin, roomId, 'v1');
      const path = `/_matrix/client/v3/rooms/${enc(roomId)}/report/${enc(eventId)}`;
      for (const body of [{ reason: 5 }, { score: 'bad' }, { score: 1.5 }]) {
        const res = await erin.post(path, body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.errcode, 'M_BAD_JSON');
      }
      const anon = await server.client().post(path, {});
      assert.equal(anon.status, 401);
    });

    it('reports rooms, known ones only', async () => {
      const frank = await server.user('frank');
      const gina = await server.user('gina');
      const roomId = (await frank.post('/_matrix/client/v3/createRoom', {})).body.room_id as string;
      const res = await gina.post(`/_matrix/client/v3/rooms/${enc(roomId)}/report`, { reason: 'spam room' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, {});
      const rows = await reports();
      const last = rows[rows.length - 1];
      assert.equal(last?.room_id, roomId);
      assert.equal(last?.event_id, null);
      assert.equal(last?.reason, 'spam room');
      const unknown = await gina.post(`/_matrix/client/v3/rooms/${enc('!nope:test.local')}/report`, {
        reason: 'x',
      });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
      const missing = await gina.post(`/_matrix/client/v3/rooms/${enc(roomId)}/report`, {});
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
    });
  });
}
