import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string; deviceId: string };
const enc = encodeURIComponent;

async function send(u: User, roomId: string, content: Json, type = 'm.room.message'): Promise<string> {
  const txn = `t${Math.random().toString(36).slice(2)}`;
  const res = await u.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/${type}/${txn}`, content);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

const text = (body: string, extra: Json = {}): Json => ({ msgtype: 'm.text', body, ...extra });
const thread = (root: string): Json => ({ 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
const relations = (e: Json) => (e.unsigned as Json)['m.relations'] as Json | undefined;

for (const engine of ENGINES) {
  describe(`${engine}: room reads — relations, threads, edits, timestamp_to_event`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let roomId: string;
    let rid: string;
    let root: string;
    let replies: string[];
    let original: string;
    let edits: string[];
    let reference: string;
    let otherRoot: string;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      roomId = created.body.room_id as string;
      rid = enc(roomId);
      await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
      root = await send(alice, roomId, text('root'));
      replies = [];
      for (let i = 0; i < 3; i++)
        replies.push(await send(i === 1 ? alice : bob, roomId, text(`r${i}`, thread(root))));
      original = await send(alice, roomId, text('orig'));
      edits = [];
      for (const body of ['edit1', 'edit2']) {
        edits.push(
          await send(alice, roomId, {
            ...text(`* ${body}`),
            'm.new_content': text(body),
            'm.relates_to': { rel_type: 'm.replace', event_id: original },
          }),
        );
        await sleep(5);
      }
      // An "edit" by someone else is not a valid replacement.
      await send(bob, roomId, {
        ...text('* hijack'),
        'm.new_content': text('hijack'),
        'm.relates_to': { rel_type: 'm.replace', event_id: original },
      });
      reference = await send(
        bob,
        roomId,
        text('ref', { 'm.relates_to': { rel_type: 'm.reference', event_id: original } }),
      );
      otherRoot = await send(bob, roomId, text('other root'));
      await send(bob, roomId, text('other reply', thread(otherRoot)));
    });
    after(() => server.close());

    it('bundles thread, edit and reference aggregations', async () => {
      const res = await bob.get(`/_matrix/client/v3/rooms/${rid}/event/${enc(root)}`);
      const t = relations(res.body)?.['m.thread'] as Json;
      assert.equal(t.count, 3);
      assert.equal((t.latest_event as Json).event_id, replies[2]);
      assert.equal(t.current_user_participated, true);
      const asAlice = await alice.get(`/_matrix/client/v3/rooms/${rid}/event/${enc(otherRoot)}`);
      assert.equal((relations(asAlice.body)?.['m.thread'] as Json).current_user_participated, false);
      const msgs = await alice.get(`/_matrix/client/v3/rooms/${rid}/messages?dir=b&limit=50`);
      const orig = (msgs.body.chunk as Json[]).find((e) => e.event_id === original) as Json;
      const rel = relations(orig) as Json;
      assert.equal((rel['m.replace'] as Json).event_id, edits[1], 'the latest valid edit');
      assert.equal(((rel['m.replace'] as Json).content as Json).body, '* edit2');
      assert.equal((orig.content as Json).body, 'orig', 'original content left intact');
      assert.deepEqual(rel['m.reference'], { chunk: [{ event_id: reference }] });
    });

    it('pages relations with tokens in both directions, filtered by type', async () => {
      const seen: string[] = [];
      let from: string | undefined;
      for (let i = 0; i < 5; i++) {
        const q = `limit=2${from ? `&from=${enc(from)}` : ''}`;
        const res = await bob.get(`/_matrix/client/v1/rooms/${rid}/relations/${enc(root)}?${q}`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        seen.push(...(res.body.chunk as Json[]).map((e) => e.event_id as string));
        if (!res.body.next_batch) break;
        from = res.body.next_batch as string;
      }
      assert.deepEqual(seen, [...replies].reverse());
      const fwd = await bob.get(
        `/_matrix/client/v1/rooms/${rid}/relations/${enc(root)}/m.thread?dir=f&limit=10`,
      );
      assert.deepEqual(
        (fwd.body.chunk as Json[]).map((e) => e.event_id),
        replies,
      );
      assert.equal(fwd.body.next_batch, undefined);
      const typed = await bob.get(
        `/_matrix/client/v1/rooms/${rid}/relations/${enc(original)}/m.replace/m.room.message`,
      );
      assert.equal((typed.body.chunk as Json[]).length, 3);
      const none = await bob.get(`/_matrix/client/v1/rooms/${rid}/relations/${enc(original)}/m.annotation`);
      assert.deepEqual(none.body.chunk, []);
      const rec = await bob.get(`/_matrix/client/v1/rooms/${rid}/relations/${enc(root)}?recurse=true`);
      assert.equal(rec.body.recursion_depth, 3);
      const bad = await bob.get(`/_matrix/client/v1/rooms/${rid}/relations/${enc(root)}?from=zzz`);
      assert.equal(bad.status, 400);
      assert.equal(bad.body.errcode, 'M_INVALID_PARAM');
      const unknown = await bob.get(`/_matrix/client/v1/rooms/${rid}/relations/${enc('$x:test.local')}`);
      assert.equal(unknown.status, 404);
    });

    it('lists threads, most recently active first, with include=participated', async () => {
      const all = await alice.get(`/_matrix/client/v1/rooms/${rid}/threads`);
      assert.equal(all.status, 200, JSON.stringify(all.body));
      assert.deepEqual(
        (all.body.chunk as Json[]).map((e) => e.event_id),
        [otherRoot, root],
      );
      assert.ok(relations((all.body.chunk as Json[])[1] as Json)?.['m.thread']);
      const p1 = await alice.get(`/_matrix/client/v1/rooms/${rid}/threads?limit=1`);
      assert.deepEqual(
        (p1.body.chunk as Json[]).map((e) => e.event_id),
        [otherRoot],
      );
      const p2 = await alice.get(
        `/_matrix/client/v1/rooms/${rid}/threads?limit=1&from=${enc(p1.body.next_batch as string)}`,
      );
      assert.deepEqual(
        (p2.body.chunk as Json[]).map((e) => e.event_id),
        [root],
      );
      assert.equal(p2.body.next_batch, undefined);
      const mine = await alice.get(`/_matrix/client/v1/rooms/${rid}/threads?include=participated`);
      assert.deepEqual(
        (mine.body.chunk as Json[]).map((e) => e.event_id),
        [root],
      );
      const bad = await alice.get(`/_matrix/client/v1/rooms/${rid}/threads?include=some`);
      assert.equal(bad.status, 400);
    });

    it('finds the nearest event to a timestamp in each direction', async () => {
      const ev = await alice.get(`/_matrix/client/v3/rooms/${rid}/event/${enc(original)}`);
      const ts = ev.body.origin_server_ts as number;
      const f = await alice.get(`/_matrix/client/v1/rooms/${rid}/timestamp_to_event?ts=${ts}&dir=f`);
      assert.equal(f.status, 200);
      assert.ok((f.body.origin_server_ts as number) >= ts);
      const b = await alice.get(`/_matrix/client/v1/rooms/${rid}/timestamp_to_event?ts=${ts}&dir=b`);
      assert.ok((b.body.origin_server_ts as number) <= ts);
      const first = await alice.get(`/_matrix/client/v1/rooms/${rid}/timestamp_to_event?ts=0&dir=f`);
      const create = await alice.get(`/_matrix/client/v3/rooms/${rid}/state/m.room.create/?format=event`);
      assert.equal(first.body.event_id, create.body.event_id);
      const none = await alice.get(`/_matrix/client/v1/rooms/${rid}/timestamp_to_event?ts=0&dir=b`);
      assert.equal(none.status, 404);
      assert.equal(none.body.errcode, 'M_NOT_FOUND');
      const future = await alice.get(
        `/_matrix/client/v1/rooms/${rid}/timestamp_to_event?ts=${Date.now() + 1e9}&dir=f`,
      );
      assert.equal(future.status, 404);
      const bad = await alice.get(`/_matrix/client/v1/rooms/${rid}/timestamp_to_event?ts=x&dir=f`);
      assert.equal(bad.status, 400);
    });
  });
}
