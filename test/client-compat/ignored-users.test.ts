/**
 * Ignoring users (m.ignored_user_list) over real HTTP on both engines: an ignored user's messages reach neither
 * /sync (initial and incremental; a long-poll is not ended by them), /messages, /context, /event nor sliding sync
 * timelines, while their state events still do; invites from ignored users are not served; a change of the list
 * applies to the very next request, and un-ignoring serves new messages again (not the ones missed meanwhile).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { listBody, ss, bodiesOf } from '../sliding-sync/ss-util.js';
import {
  bodies,
  createRoom,
  enc,
  join,
  joinedRoom,
  mustJoin,
  post,
  putState,
  roomsOf,
  send,
  sync,
  syncSince,
  text,
  type User,
} from '../sync/sync-util.js';

async function setIgnored(u: User, ignored: string[]): Promise<void> {
  const content = { ignored_users: Object.fromEntries(ignored.map((id) => [id, {}])) };
  const res = await u.put(
    `/_matrix/client/v3/user/${enc(u.userId)}/account_data/m.ignored_user_list`,
    content,
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

const chunkBodies = (events: unknown): string[] => bodies((events ?? []) as Json[]);

for (const engine of ENGINES) {
  describe(`${engine}: ignoring users`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    let roomId: string;
    let bobMsg: string;
    let carolMsg: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ign_alice');
      bob = await server.user('ign_bob');
      carol = await server.user('ign_carol');
      roomId = await createRoom(alice, {
        preset: 'public_chat',
        power_level_content_override: { users: { [bob.userId]: 50 } },
      });
      await join(bob, roomId);
      await join(carol, roomId);
      await text(carol, roomId, 'carol 1');
      bobMsg = await text(bob, roomId, 'bob 1');
      await putState(bob, roomId, 'm.room.topic', { topic: 'set by bob' });
      carolMsg = await text(carol, roomId, 'carol 2');
      await text(bob, roomId, 'bob 2');
      await setIgnored(alice, [bob.userId]);
    });
    after(() => server.close());

    it('an initial sync leaves out their messages but keeps their state events', async () => {
      const body = await sync(alice, { filter: { room: { timeline: { limit: 50 } } } });
      const events = mustJoin(body, roomId).timeline.events;
      assert.deepEqual(bodies(events), ['carol 1', 'carol 2']);
      assert.ok(
        events.some((e) => e.type === 'm.room.topic' && e.sender === bob.userId),
        'bob topic kept',
      );
      assert.ok(
        events.some((e) => e.type === 'm.room.member' && e.sender === bob.userId),
        'bob join kept',
      );
      // The list itself is served as account data.
      const ad = (body.account_data as { events: Json[] }).events;
      assert.ok(ad.some((e) => e.type === 'm.ignored_user_list'));
    });

    it('an incremental sync: their message neither shows nor ends a long-poll; others do', async () => {
      const first = await sync(alice, { timeout: 0 });
      const started = Date.now();
      const poll = sync(alice, { since: first.next_batch as string, timeout: 1500 });
      await text(bob, roomId, 'bob while polling');
      const quiet = await poll;
      assert.ok(Date.now() - started >= 1200, 'the long-poll was not ended by the ignored message');
      assert.equal(joinedRoom(quiet, roomId), undefined, JSON.stringify(quiet.rooms));
      await text(carol, roomId, 'carol while polling');
      const next = await syncSince(alice, quiet);
      assert.deepEqual(bodies(mustJoin(next, roomId).timeline.events), ['carol while polling']);
      // Bob himself and Carol still see everything.
      const forCarol = await sync(carol, { filter: { room: { timeline: { limit: 50 } } } });
      assert.ok(bodies(mustJoin(forCarol, roomId).timeline.events).includes('bob while polling'));
    });

    it('a gappy timeline whose visible part is all theirs keeps the room, limited, for paginating back', async () => {
      const first = await sync(alice, { timeout: 0 });
      for (const n of [1, 2, 3]) await text(carol, roomId, `carol gap ${n}`);
      for (const n of [1, 2]) await text(bob, roomId, `bob gap ${n}`);
      const inc = await syncSince(alice, first, { filter: { room: { timeline: { limit: 2 } } } });
      const room = mustJoin(inc, roomId);
      assert.equal(room.timeline.limited, true);
      assert.deepEqual(bodies(room.timeline.events), []);
      const back = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=3&from=${enc(room.timeline.prev_batch as string)}`,
      );
      assert.equal(back.status, 200, JSON.stringify(back.body));
      assert.deepEqual(chunkBodies(back.body.chunk), ['carol gap 3', 'carol gap 2', 'carol gap 1']);
    });

    it('/messages, /context and /event hide their messages', async () => {
      const msgs = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=50`);
      assert.equal(msgs.status, 200, JSON.stringify(msgs.body));
      const chunk = msgs.body.chunk as Json[];
      assert.ok(!chunkBodies(chunk).some((b) => b.startsWith('bob')), JSON.stringify(chunkBodies(chunk)));
      assert.ok(chunkBodies(chunk).includes('carol 2'));
      assert.ok(
        chunk.some((e) => e.type === 'm.room.topic'),
        'state events of the ignored user are kept',
      );

      const ctx = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/context/${enc(carolMsg)}?limit=10`,
      );
      assert.equal(ctx.status, 200, JSON.stringify(ctx.body));
      const around = [...(ctx.body.events_before as Json[]), ...(ctx.body.events_after as Json[])];
      assert.ok(chunkBodies(around).includes('carol 1'));
      assert.ok(!chunkBodies(around).some((b) => b.startsWith('bob')), JSON.stringify(chunkBodies(around)));

      const ctxBob = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/context/${enc(bobMsg)}`);
      assert.equal(ctxBob.status, 403, JSON.stringify(ctxBob.body));
      assert.equal(ctxBob.body.errcode, 'M_FORBIDDEN');
      const ev = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(bobMsg)}`);
      assert.equal(ev.status, 404, JSON.stringify(ev.body));
      // Carol still reads Bob's message.
      const forCarol = await carol.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(bobMsg)}`);
      assert.equal(forCarol.status, 200);
    });

    it('/relations, /threads and /notifications leave them out', async () => {
      const root = await text(carol, roomId, 'carol thread root');
      const bobRoot = await text(bob, roomId, 'bob thread root');
      const thread = (body: string, to: string) => ({
        msgtype: 'm.text',
        body,
        'm.relates_to': { rel_type: 'm.thread', event_id: to },
      });
      await send(bob, roomId, thread('bob in thread', root));
      await send(carol, roomId, thread('carol in thread', root));
      await send(carol, roomId, thread('carol in bob thread', bobRoot));
      const rel = await alice.get(`/_matrix/client/v1/rooms/${enc(roomId)}/relations/${enc(root)}`);
      assert.equal(rel.status, 200, JSON.stringify(rel.body));
      assert.deepEqual(chunkBodies(rel.body.chunk), ['carol in thread']);
      const threads = await alice.get(`/_matrix/client/v1/rooms/${enc(roomId)}/threads`);
      assert.equal(threads.status, 200, JSON.stringify(threads.body));
      const roots = chunkBodies(threads.body.chunk);
      assert.ok(roots.includes('carol thread root'), JSON.stringify(roots));
      assert.ok(!roots.includes('bob thread root'), JSON.stringify(roots));
      const notes = await alice.get('/_matrix/client/v3/notifications?limit=100');
      assert.equal(notes.status, 200, JSON.stringify(notes.body));
      const senders = new Set(
        (notes.body.notifications as { event: Json }[]).map((n) => n.event.sender as string),
      );
      assert.ok(senders.has(carol.userId), JSON.stringify([...senders]));
      assert.ok(!senders.has(bob.userId), JSON.stringify([...senders]));
    });

    it('/search leaves them out', async () => {
      const res = await alice.post('/_matrix/client/v3/search', {
        search_categories: { room_events: { search_term: 'root', order_by: 'recent' } },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const results = ((res.body.search_categories as Json).room_events as Json).results as {
        result: Json;
      }[];
      const got = chunkBodies(results.map((x) => x.result));
      assert.ok(got.includes('carol thread root'), JSON.stringify(got));
      assert.ok(!got.includes('bob thread root'), JSON.stringify(got));
    });

    it('the legacy /initialSync, /rooms/{roomId}/initialSync and /events leave them out', async () => {
      const room = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/initialSync?limit=50`);
      assert.equal(room.status, 200, JSON.stringify(room.body));
      const roomChunk = chunkBodies((room.body.messages as Json).chunk);
      assert.ok(
        roomChunk.includes('carol 2') && !roomChunk.some((b) => b.startsWith('bob')),
        String(roomChunk),
      );
      const all = await alice.get('/_matrix/client/v3/initialSync?limit=50');
      assert.equal(all.status, 200, JSON.stringify(all.body));
      const entry = (all.body.rooms as Json[]).find((r) => r.room_id === roomId) as Json;
      const allChunk = chunkBodies((entry.messages as Json).chunk);
      assert.ok(allChunk.includes('carol 2') && !allChunk.some((b) => b.startsWith('bob')), String(allChunk));
      const one = await alice.get(`/_matrix/client/v3/events/${enc(bobMsg)}`);
      assert.equal(one.status, 404);
      const from = all.body.end as string;
      await text(bob, roomId, 'bob for /events');
      await text(carol, roomId, 'carol for /events');
      const stream = await alice.get(`/_matrix/client/v3/events?from=${enc(from)}&timeout=0`);
      assert.equal(stream.status, 200, JSON.stringify(stream.body));
      assert.deepEqual(chunkBodies(stream.body.chunk), ['carol for /events']);
    });

    it('sliding sync timelines leave out their messages', async () => {
      const res = await ss(alice, listBody([0, 10], { timeline_limit: 20 }));
      const room = res.rooms[roomId];
      assert.ok(room, JSON.stringify(Object.keys(res.rooms)));
      const got = bodiesOf(room.timeline);
      assert.ok(got.includes('carol 2'), JSON.stringify(got));
      assert.ok(!got.some((b) => b.startsWith('bob')), JSON.stringify(got));
      assert.ok((room.timeline ?? []).some((e) => e.type === 'm.room.topic'));
      // A new message of theirs alone brings nothing for the room.
      await text(bob, roomId, 'bob for sliding sync');
      const next = await ss(alice, listBody([0, 10], { timeline_limit: 20 }), { pos: res.pos });
      assert.ok(!bodiesOf(next.rooms[roomId]?.timeline).includes('bob for sliding sync'));
    });

    it('invites from an ignored user are not served; others are', async () => {
      const byBob = await createRoom(bob);
      const byCarol = await createRoom(carol);
      const first = await sync(alice, { timeout: 0 });
      await post(bob, `/_matrix/client/v3/rooms/${enc(byBob)}/invite`, { user_id: alice.userId });
      await post(carol, `/_matrix/client/v3/rooms/${enc(byCarol)}/invite`, { user_id: alice.userId });
      const inc = await syncSince(alice, first);
      assert.ok(roomsOf(inc, 'invite')[byCarol], JSON.stringify(inc.rooms));
      assert.equal(roomsOf(inc, 'invite')[byBob], undefined);
      const initial = await sync(alice);
      assert.ok(roomsOf(initial, 'invite')[byCarol]);
      assert.equal(roomsOf(initial, 'invite')[byBob], undefined);
    });

    it('a change of the list applies to the next request; un-ignoring serves only new messages', async () => {
      const first = await sync(alice, { timeout: 0 });
      await text(bob, roomId, 'bob missed');
      const skipped = await syncSince(alice, first);
      assert.equal(joinedRoom(skipped, roomId), undefined);
      await setIgnored(alice, []);
      await text(bob, roomId, 'bob after un-ignore');
      const inc = await syncSince(alice, skipped);
      assert.deepEqual(bodies(mustJoin(inc, roomId).timeline.events), ['bob after un-ignore']);
      const ev = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(bobMsg)}`);
      assert.equal(ev.status, 200);
      // A fresh sync gets what was missed (as the spec tells clients to do).
      const fresh = await sync(alice, { filter: { room: { timeline: { limit: 50 } } } });
      assert.ok(bodies(mustJoin(fresh, roomId).timeline.events).includes('bob missed'));
      // Ignore again: the very next request hides Bob (the remembered list was dropped on the write).
      await setIgnored(alice, [bob.userId]);
      const again = await sync(alice, { filter: { room: { timeline: { limit: 50 } } } });
      assert.ok(!bodies(mustJoin(again, roomId).timeline.events).some((b) => b.startsWith('bob')));
      const evAgain = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(bobMsg)}`);
      assert.equal(evAgain.status, 404);
    });

    it('a malformed list ignores nobody and breaks nothing', async () => {
      const res = await alice.put(
        `/_matrix/client/v3/user/${enc(alice.userId)}/account_data/m.ignored_user_list`,
        {
          ignored_users: ['not', 'a', 'map'],
        },
      );
      assert.equal(res.status, 200);
      const body = await sync(alice, { filter: { room: { timeline: { limit: 50 } } } });
      assert.ok(bodies(mustJoin(body, roomId).timeline.events).includes('bob 2'));
      await setIgnored(alice, [bob.userId]);
    });
  });
}
