/**
 * The reader caches an event from the row its commit wrote (homeserver.ts commit listener → EventReader.remember),
 * so the long-polls a message wakes do not read it back. What a sync serves from that copy must be exactly what the
 * same sync serves from the database after a restart (nothing cached): content, ids, stream tokens, the sender's
 * transaction id, and a redaction committed later applied.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, mustJoin, putState, sync, syncSince, text, type User } from './sync-util.js';

/** A value with every `unsigned.age` (which moves with the clock) left out. */
function ageless(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(ageless);
  if (typeof v !== 'object' || v === null) return v;
  const out: Json = {};
  for (const [k, x] of Object.entries(v)) if (k !== 'age') out[k] = ageless(x);
  return out;
}

/** The room's whole section of a sync response (timeline, state, summary, counts), without ages. */
function section(body: Json, roomId: string): Json {
  return ageless(mustJoin(body, roomId)) as Json;
}

const LIMITED = { room: { timeline: { limit: 2 } } };

for (const engine of ENGINES) {
  describe(`${engine}: events cached at commit`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('cc_alice');
      bob = await server.user('cc_bob');
    });
    after(() => server.close());

    it('serve what the database serves after a restart', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      const bobSince = (await sync(bob)).next_batch as string;
      const aliceSince = (await sync(alice)).next_batch as string;
      const doomed = await text(alice, room, 'to be redacted');
      await text(alice, room, 'kept');
      await putState(alice, room, 'm.room.topic', { topic: 'cached topic' });
      const redacted = await alice.put(`/_matrix/client/v3/rooms/${enc(room)}/redact/${enc(doomed)}/cc1`, {});
      assert.equal(redacted.status, 200);

      const cachedBob = section(await syncSince(bob, bobSince), room);
      const cachedAlice = section(await syncSince(alice, aliceSince), room);
      // A limited timeline: its state section is the state at the first event shown (that event's snapshot).
      const cachedLimited = section(await syncSince(bob, bobSince, { filter: LIMITED }), room);
      const cachedEvent = await bob.get(`/_matrix/client/v3/rooms/${enc(room)}/event/${enc(doomed)}`);
      const events = (s: Json) => (s.timeline as { events: Json[] }).events;
      assert.equal(events(cachedBob).length, 4);
      // The redacted message is served redacted from the cached copy too.
      assert.deepEqual(events(cachedBob)[0]?.content, {});
      // Only the sender's own device sees its transaction ids.
      assert.equal(typeof (events(cachedAlice)[1]?.unsigned as Json).transaction_id, 'string');
      assert.equal((events(cachedBob)[1]?.unsigned as Json).transaction_id, undefined);
      assert.equal((cachedLimited.timeline as { limited: boolean }).limited, true);

      await server.stop();
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
      const storedBob = section(await syncSince(bob, bobSince), room);
      const storedAlice = section(await syncSince(alice, aliceSince), room);
      const storedLimited = section(await syncSince(bob, bobSince, { filter: LIMITED }), room);
      const storedEvent = await bob.get(`/_matrix/client/v3/rooms/${enc(room)}/event/${enc(doomed)}`);
      assert.deepEqual(cachedBob, storedBob);
      assert.deepEqual(cachedAlice, storedAlice);
      assert.deepEqual(cachedLimited, storedLimited);
      assert.deepEqual(ageless(cachedEvent.body), ageless(storedEvent.body));
    });

    it("judge history visibility by the cached event's own state", async () => {
      const eve = await server.user('cc_eve');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await putState(alice, room, 'm.room.history_visibility', { history_visibility: 'joined' });
      await text(alice, room, 'before eve');
      await join(eve, room);
      await text(alice, room, 'after eve');
      // Served from the copies cached at commit: Eve sees what was sent while she was in the room, and no earlier.
      const page = await eve.get(`/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=50`);
      assert.equal(page.status, 200);
      const seen = (page.body.chunk as Json[])
        .filter((e) => e.type === 'm.room.message')
        .map((e) => (e.content as Json).body);
      assert.deepEqual(seen, ['after eve']);
    });
  });
}
