import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string; deviceId: string };
const enc = encodeURIComponent;

async function createRoom(owner: User, body: Json = {}): Promise<string> {
  const res = await owner.post('/_matrix/client/v3/createRoom', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

async function send(u: User, roomId: string, body: Json, type = 'm.room.message'): Promise<string> {
  const txn = `t${Math.random().toString(36).slice(2)}`;
  const res = await u.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/${type}/${txn}`, body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

/** Pages through /messages until `end` is absent; returns every chunk event. */
async function pageAll(u: User, roomId: string, dir: 'b' | 'f', limit: number, extra = ''): Promise<Json[]> {
  const out: Json[] = [];
  let from: string | undefined;
  for (let i = 0; i < 100; i++) {
    const q = `dir=${dir}&limit=${limit}${from ? `&from=${enc(from)}` : ''}${extra}`;
    const res = await u.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?${q}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const chunk = res.body.chunk as Json[];
    assert.ok(chunk.length <= limit);
    out.push(...chunk);
    if (res.body.end === undefined) return out;
    assert.ok(chunk.length > 0, 'a page with an end token is not empty');
    from = res.body.end as string;
  }
  throw new Error('pagination did not terminate');
}

const bodies = (events: Json[]) =>
  events.filter((e) => e.type === 'm.room.message').map((e) => (e.content as Json).body);

for (const engine of ENGINES) {
  describe(`${engine}: room reads — /messages, /context, /event`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let roomId: string;
    const ids: string[] = [];
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      roomId = await createRoom(alice, { preset: 'public_chat' });
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {})).status, 200);
      for (let i = 0; i < 30; i++)
        ids.push(await send(i % 2 ? bob : alice, roomId, { msgtype: 'm.text', body: `m${i}` }));
    });
    after(() => server.close());

    it('pages backwards and forwards in pages of 7 with no duplicates or gaps, in stable order', async () => {
      const back = await pageAll(alice, roomId, 'b', 7);
      const fwd = await pageAll(alice, roomId, 'f', 7);
      const backIds = back.map((e) => e.event_id as string);
      assert.equal(new Set(backIds).size, backIds.length, 'no duplicates');
      assert.deepEqual(
        fwd.map((e) => e.event_id),
        [...backIds].reverse(),
        'forwards is backwards reversed',
      );
      assert.deepEqual(
        bodies(fwd),
        Array.from({ length: 30 }, (_, i) => `m${i}`),
      );
      assert.equal(fwd[0]?.type, 'm.room.create');
      assert.deepEqual(
        (await pageAll(alice, roomId, 'b', 7)).map((e) => e.event_id),
        backIds,
        'stable',
      );
      const ts = fwd.map((e) => e.origin_server_ts as number);
      assert.deepEqual(
        ts,
        [...ts].sort((a, b) => a - b),
      );
    });

    it('turns around at a token and honours `to`', async () => {
      const rid = enc(roomId);
      const p1 = await alice.get(`/_matrix/client/v3/rooms/${rid}/messages?dir=b&limit=7`);
      assert.equal(typeof p1.body.start, 'string');
      const chunk1 = p1.body.chunk as Json[];
      const back = await alice.get(
        `/_matrix/client/v3/rooms/${rid}/messages?dir=f&limit=7&from=${enc(p1.body.end as string)}`,
      );
      assert.deepEqual(
        (back.body.chunk as Json[]).map((e) => e.event_id),
        chunk1.map((e) => e.event_id).reverse(),
      );
      const p2 = await alice.get(
        `/_matrix/client/v3/rooms/${rid}/messages?dir=b&limit=50&from=${enc(p1.body.start as string)}&to=${enc(p1.body.end as string)}`,
      );
      assert.deepEqual(
        (p2.body.chunk as Json[]).map((e) => e.event_id),
        chunk1.map((e) => e.event_id),
      );
      assert.equal(p2.body.end, undefined, 'nothing more before `to`');
      assert.equal(bodies(chunk1)[0], 'm29');
      const own = chunk1.find((e) => e.sender === alice.userId);
      assert.equal(
        typeof (own?.unsigned as Json).transaction_id,
        'string',
        'own events carry transaction_id',
      );
      const other = chunk1.find((e) => e.sender === bob.userId);
      assert.equal((other?.unsigned as Json).transaction_id, undefined);
    });

    it('applies RoomEventFilter fields and lazy-loads members', async () => {
      const rid = enc(roomId);
      const get = (f: Json) =>
        alice.get(
          `/_matrix/client/v3/rooms/${rid}/messages?dir=b&limit=100&filter=${enc(JSON.stringify(f))}`,
        );
      const onlyMsgs = await get({ types: ['m.room.message'] });
      assert.equal((onlyMsgs.body.chunk as Json[]).length, 30);
      const wild = await get({ types: ['m.room.*'], not_types: ['m.room.message'] });
      assert.ok((wild.body.chunk as Json[]).every((e) => e.type !== 'm.room.message'));
      assert.ok((wild.body.chunk as Json[]).some((e) => e.type === 'm.room.create'));
      const noBob = await get({ not_senders: [bob.userId], types: ['m.room.message'] });
      assert.equal((noBob.body.chunk as Json[]).length, 15);
      const onlyBob = await get({ senders: [bob.userId] });
      assert.ok((onlyBob.body.chunk as Json[]).every((e) => e.sender === bob.userId));
      const url = await send(alice, roomId, { msgtype: 'm.image', body: 'pic', url: 'mxc://test.local/abc' });
      const withUrl = await get({ contains_url: true });
      assert.deepEqual(
        (withUrl.body.chunk as Json[]).map((e) => e.event_id),
        [url],
      );
      const lazy = await alice.get(
        `/_matrix/client/v3/rooms/${rid}/messages?dir=b&limit=3&filter=${enc(JSON.stringify({ lazy_load_members: true, types: ['m.room.message'] }))}`,
      );
      const state = lazy.body.state as Json[];
      const senders = new Set((lazy.body.chunk as Json[]).map((e) => e.sender));
      assert.deepEqual(new Set(state.map((e) => e.state_key)), senders);
      assert.ok(state.every((e) => e.type === 'm.room.member'));
    });

    it('serves redacted events redacted', async () => {
      const target = await send(bob, roomId, { msgtype: 'm.text', body: 'oops' });
      const red = await bob.put(`/_matrix/client/v3/rooms/${enc(roomId)}/redact/${enc(target)}/r1`, {
        reason: 'typo',
      });
      assert.equal(red.status, 200);
      const res = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=5`);
      const ev = (res.body.chunk as Json[]).find((e) => e.event_id === target);
      assert.deepEqual(ev?.content, {});
      assert.equal(((ev?.unsigned as Json).redacted_because as Json).event_id, red.body.event_id);
      const single = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(target)}`);
      assert.equal(single.status, 200);
      assert.deepEqual(single.body.content, {});
    });

    it('returns the context of an event', async () => {
      const mid = ids[15] as string;
      const res = await alice.get(`/_matrix/client/v3/rooms/${enc(roomId)}/context/${enc(mid)}?limit=6`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal((res.body.event as Json).event_id, mid);
      assert.deepEqual(bodies(res.body.events_before as Json[]), ['m14', 'm13', 'm12']);
      assert.deepEqual(bodies(res.body.events_after as Json[]), ['m16', 'm17', 'm18']);
      const state = res.body.state as Json[];
      assert.ok(state.some((e) => e.type === 'm.room.create'));
      const more = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=2&from=${enc(res.body.start as string)}`,
      );
      assert.deepEqual(bodies(more.body.chunk as Json[]), ['m11', 'm10']);
      const fwd = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=f&limit=2&from=${enc(res.body.end as string)}`,
      );
      assert.deepEqual(bodies(fwd.body.chunk as Json[]), ['m19', 'm20']);
      const lazy = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/context/${enc(mid)}?limit=2&filter=${enc(JSON.stringify({ lazy_load_members: true }))}`,
      );
      const members = (lazy.body.state as Json[]).filter((e) => e.type === 'm.room.member');
      assert.ok(members.length >= 1 && members.length <= 2);
      const unknown = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/context/${enc('$nope:test.local')}`,
      );
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
    });

    it('fetches single events and 404s unknown ones', async () => {
      const res = await bob.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(ids[3] as string)}`);
      assert.equal(res.status, 200);
      assert.equal((res.body.content as Json).body, 'm3');
      const missing = await bob.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc('$missingAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'.slice(0, 44))}`,
      );
      assert.equal(missing.status, 404);
      assert.equal(missing.body.errcode, 'M_NOT_FOUND');
    });

    it('rejects malformed input with 400 and unknown rooms with 403', async () => {
      const rid = enc(roomId);
      for (const q of [
        'from=garbage',
        'from=s12x',
        'to=%00',
        'dir=x',
        'limit=abc',
        'filter=%7Bnot',
        'filter=%5B%5D',
      ]) {
        const res = await alice.get(`/_matrix/client/v3/rooms/${rid}/messages?${q}`);
        assert.equal(res.status, 400, `${q}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, 'M_INVALID_PARAM', q);
      }
      const badRoom = await alice.get(`/_matrix/client/v3/rooms/${enc('not-a-room')}/messages`);
      assert.equal(badRoom.status, 400);
      assert.equal(badRoom.body.errcode, 'M_INVALID_PARAM');
      // Event ids are opaque to clients: an unusual but non-empty id is simply unknown.
      const badEvent = await alice.get(`/_matrix/client/v3/rooms/${rid}/context/${enc('nope')}`);
      assert.equal(badEvent.status, 404);
      assert.equal(badEvent.body.errcode, 'M_NOT_FOUND');
      const unknown = await alice.get(`/_matrix/client/v3/rooms/${enc('!unknown:test.local')}/messages`);
      assert.equal(unknown.status, 403);
      assert.equal(unknown.body.errcode, 'M_FORBIDDEN');
    });

    it('skips an event whose JSON is damaged and serves the rest', async () => {
      const rid = await createRoom(alice, {});
      const sent: string[] = [];
      for (let i = 0; i < 5; i++) sent.push(await send(alice, rid, { msgtype: 'm.text', body: `d${i}` }));
      // Damaged behind the server's back, then read by a restarted server (the running one caches what it wrote).
      await sql`UPDATE events SET json = '{bad' WHERE event_id = ${sent[2]}`.execute(server.hs.storage.db);
      await server.stop();
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
      const all = await pageAll(alice, rid, 'b', 3);
      assert.deepEqual(bodies(all), ['d4', 'd3', 'd1', 'd0']);
      const ctx = await alice.get(
        `/_matrix/client/v3/rooms/${enc(rid)}/context/${enc(sent[1] as string)}?limit=4`,
      );
      assert.equal(ctx.status, 200, JSON.stringify(ctx.body));
      assert.deepEqual(bodies(ctx.body.events_after as Json[]), ['d3', 'd4']);
      const gone = await alice.get(`/_matrix/client/v3/rooms/${enc(rid)}/event/${enc(sent[2] as string)}`);
      assert.equal(gone.status, 404);
    });
  });
}
