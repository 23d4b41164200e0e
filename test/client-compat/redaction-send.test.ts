/**
 * m.room.redaction sent with PUT /rooms/{roomId}/send/{eventType}/{txnId} (v1.18, MSC4169) over real HTTP on both
 * engines, in a room version with `redacts` at the top level (10) and one with it in `content` (11 and later): the
 * target is redacted exactly as with PUT /redact, the same checks apply (another user's event needs the redact
 * level), the transaction id is idempotent, and before version 11 `redacts` is moved out of the content.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, mustJoin, sync, syncSince, text, type User } from '../sync/sync-util.js';

let txn = 0;
function sendRedaction(u: User, roomId: string, content: Json, txnId = `r${++txn}`) {
  return u.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.redaction/${txnId}`, content);
}

for (const engine of ENGINES) {
  describe(`${engine}: m.room.redaction through PUT /send`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('rs_alice');
      bob = await server.user('rs_bob');
    });
    after(() => server.close());

    for (const version of ['10', '11', '12']) {
      it(`room version ${version}: redacts the target like /redact`, async () => {
        const roomId = await createRoom(alice, { room_version: version, preset: 'public_chat' });
        await join(bob, roomId);
        const target = await text(alice, roomId, 'secret');
        const first = await sync(alice, { timeout: 0 });
        const res = await sendRedaction(alice, roomId, { redacts: target, reason: 'oops' }, 'same');
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const redactionId = res.body.event_id as string;
        // The same transaction id answers the same event.
        const again = await sendRedaction(alice, roomId, { redacts: target, reason: 'oops' }, 'same');
        assert.equal(again.body.event_id, redactionId);

        const ev = await bob.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(target)}`);
        assert.equal(ev.status, 200);
        assert.deepEqual(ev.body.content, {}, 'the target is redacted');
        const because = (ev.body.unsigned as Json).redacted_because as Json;
        assert.equal(because.event_id, redactionId);

        const inc = await syncSince(alice, first);
        const events = mustJoin(inc, roomId).timeline.events.filter((e) => e.type === 'm.room.redaction');
        assert.equal(events.length, 1);
        const served = events[0] as Json;
        assert.equal(served.redacts, target);
        assert.equal((served.content as Json).redacts, target);
        assert.equal((served.content as Json).reason, 'oops');

        // The stored event has `redacts` where the room version puts it, once.
        const row = await server.hs.storage.db
          .selectFrom('events')
          .select('json')
          .where('event_id', '=', redactionId)
          .executeTakeFirstOrThrow();
        const pdu = JSON.parse(row.json) as Json;
        if (version === '10') {
          assert.equal(pdu.redacts, target);
          assert.equal((pdu.content as Json).redacts, undefined, 'moved out of the content');
        } else {
          assert.equal((pdu.content as Json).redacts, target);
          assert.equal(pdu.redacts, undefined);
        }
      });
    }

    it("another user's event needs the redact level; a malformed redacts is refused", async () => {
      const roomId = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, roomId);
      const byAlice = await text(alice, roomId, 'alice says');
      const refused = await sendRedaction(bob, roomId, { redacts: byAlice });
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      const ev = await bob.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(byAlice)}`);
      assert.equal((ev.body.content as Json).body, 'alice says');
      for (const bad of [{ redacts: 42 }, { reason: 'no target' }, {}]) {
        const res = await sendRedaction(alice, roomId, bad);
        assert.equal(res.status, 400, `${JSON.stringify(bad)}: ${JSON.stringify(res.body)}`);
        assert.equal(typeof res.body.errcode, 'string');
      }
      // Bob redacts his own message with /send.
      const byBob = await text(bob, roomId, 'bob says');
      const own = await sendRedaction(bob, roomId, { redacts: byBob });
      assert.equal(own.status, 200, JSON.stringify(own.body));
    });
  });
}
