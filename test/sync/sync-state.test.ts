/**
 * State in /sync over real HTTP: a gappy incremental sync must carry every state change that fell into the gap,
 * its prev_batch must page back over exactly the skipped events, and use_state_after reports the state at the
 * end of the timeline.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import {
  assertSyncShape,
  bodies,
  createRoom,
  enc,
  join,
  mustJoin,
  putState,
  sync,
  syncSince,
  text,
  types,
  type User,
} from './sync-util.js';

const keyOf = (e: Json): string => `${e.type as string}|${e.state_key as string}`;

for (const engine of ENGINES) {
  describe(`${engine}: /sync state`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('st_alice');
      bob = await server.user('st_bob');
    });
    after(() => server.close());

    it('a gappy sync returns in state exactly the state changes between since and the timeline start', async () => {
      const carol = await server.user('st_carol');
      const room = await createRoom(alice, { preset: 'public_chat', name: 'Gap', topic: 'old topic' });
      await join(bob, room);
      const f = { filter: { room: { rooms: [room], timeline: { limit: 5 } } } };
      const b0 = await sync(bob, f);
      // Into the gap: a topic change, a join, a name change that is overwritten, and many messages.
      const topicId = await putState(alice, room, 'm.room.topic', { topic: 'new topic' });
      await join(carol, room);
      await putState(alice, room, 'm.room.name', { name: 'Gap 2' });
      await putState(alice, room, 'm.room.name', { name: 'Gap 3' });
      for (let i = 0; i < 8; i++) await text(alice, room, `gap ${i}`);
      // Inside the timeline: another state change, which must not be repeated in state.
      await putState(alice, room, 'org.example.state', { in: 'timeline' }, 'k');
      for (let i = 0; i < 4; i++) await text(alice, room, `tl ${i}`);

      const b1 = await syncSince(bob, b0, f);
      assertSyncShape(b1);
      const r = mustJoin(b1, room);
      assert.equal(r.timeline.limited, true);
      assert.deepEqual(types(r.timeline.events), [
        'org.example.state',
        ...Array<string>(4).fill('m.room.message'),
      ]);
      const state = r.state?.events ?? [];
      assert.deepEqual(
        state.map(keyOf).sort(),
        ['m.room.member|' + carol.userId, 'm.room.name|', 'm.room.topic|'].sort(),
        'exactly the changes in the gap',
      );
      const topic = state.find((e) => e.type === 'm.room.topic');
      assert.equal(topic?.event_id, topicId);
      assert.equal((topic?.content as Json).topic, 'new topic');
      assert.equal((state.find((e) => e.type === 'm.room.name')?.content as Json).name, 'Gap 3');
      assert.equal((r.summary as Json | undefined)?.['m.joined_member_count'], 3);

      // A non-gappy incremental sync carries no state.
      await text(alice, room, 'small');
      const b2 = await syncSince(bob, b1, f);
      const r2 = mustJoin(b2, room);
      assert.equal(r2.timeline.limited, false);
      assert.deepEqual(r2.state?.events, []);
    });

    it('a gap made of state changes only still delivers all of them', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      const f = { filter: { room: { rooms: [room], timeline: { limit: 2 } } } };
      const b0 = await sync(bob, f);
      for (let i = 0; i < 6; i++) await putState(alice, room, 'org.example.s', { i }, `key${i}`);
      const b1 = await syncSince(bob, b0, f);
      const r = mustJoin(b1, room);
      assert.equal(r.timeline.limited, true);
      const delivered = [...(r.state?.events ?? []), ...r.timeline.events]
        .filter((e) => e.type === 'org.example.s')
        .map((e) => e.state_key)
        .sort();
      assert.deepEqual(delivered, ['key0', 'key1', 'key2', 'key3', 'key4', 'key5']);
      assert.deepEqual((r.state?.events ?? []).map((e) => e.state_key).sort(), [
        'key0',
        'key1',
        'key2',
        'key3',
      ]);
    });

    it('prev_batch of a limited timeline pages back over exactly the skipped events', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      const f = { filter: { room: { rooms: [room], timeline: { limit: 3 } } } };
      await text(alice, room, 'seen before');
      const b0 = await sync(bob, f);
      const skipped: string[] = [];
      for (let i = 0; i < 7; i++) skipped.push(await text(alice, room, `skipped ${i}`));
      skipped.push(await putState(alice, room, 'm.room.topic', { topic: 'skipped too' }));
      const inTimeline: string[] = [];
      for (let i = 0; i < 3; i++) inTimeline.push(await text(alice, room, `tl ${i}`));
      const b1 = await syncSince(bob, b0, f);
      const r = mustJoin(b1, room);
      assert.equal(r.timeline.limited, true);
      assert.deepEqual(
        r.timeline.events.map((e) => e.event_id),
        inTimeline,
      );
      assert.equal(typeof r.timeline.prev_batch, 'string');
      const page = await bob.get(
        `/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=${skipped.length}&from=${enc(
          r.timeline.prev_batch as string,
        )}`,
      );
      assert.equal(page.status, 200, JSON.stringify(page.body));
      const chunk = page.body.chunk as Json[];
      assert.deepEqual(
        chunk.map((e) => e.event_id),
        [...skipped].reverse(),
        'newest skipped event first, no timeline event repeated',
      );
      // One more page reaches what the previous sync had already delivered.
      const more = await bob.get(
        `/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=1&from=${enc(page.body.end as string)}`,
      );
      assert.deepEqual(bodies(more.body.chunk as Json[]), ['seen before']);
    });

    it('use_state_after=true returns state_after (and no state) reflecting the end of the timeline', async () => {
      const room = await createRoom(alice, { preset: 'public_chat', topic: 't0' });
      await join(bob, room);
      const f = { filter: { room: { rooms: [room], timeline: { limit: 3 } } }, use_state_after: true };
      const b0 = await sync(bob, f);
      assertSyncShape(b0, { stateAfter: true });
      const r0 = mustJoin(b0, room);
      assert.equal(r0.state, undefined);
      const topic0 = r0.state_after?.events.find((e) => e.type === 'm.room.topic');
      assert.equal((topic0?.content as Json).topic, 't0');
      assert.ok(r0.state_after?.events.some((e) => e.type === 'm.room.member' && e.state_key === bob.userId));

      // A change in the gap and one inside the timeline: state_after carries both, the latest values.
      await putState(alice, room, 'm.room.name', { name: 'in the gap' });
      for (let i = 0; i < 4; i++) await text(alice, room, `gap ${i}`);
      await putState(alice, room, 'm.room.topic', { topic: 't1' });
      await text(alice, room, 'last');
      const b1 = await syncSince(bob, b0, f);
      assertSyncShape(b1, { stateAfter: true });
      const r1 = mustJoin(b1, room);
      assert.equal(r1.timeline.limited, true);
      assert.ok(
        r1.timeline.events.some((e) => e.type === 'm.room.topic'),
        'topic change in the timeline',
      );
      assert.equal(r1.state, undefined);
      const after1 = r1.state_after?.events ?? [];
      assert.deepEqual(after1.map(keyOf).sort(), ['m.room.name|', 'm.room.topic|']);
      assert.equal((after1.find((e) => e.type === 'm.room.topic')?.content as Json).topic, 't1');

      // Nothing changed in state: state_after is present and empty.
      await text(alice, room, 'no state');
      const b2 = await syncSince(bob, b1, f);
      assert.deepEqual(mustJoin(b2, room).state_after, { events: [] });
      // And without the parameter the response has state, not state_after.
      const plain = await syncSince(bob, b1, { filter: f.filter });
      assertSyncShape(plain);
    });
  });
}
