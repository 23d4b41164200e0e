import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { receiptEventsForRooms } from '../../src/sync/ephemeral.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string };

for (const engine of ENGINES) {
  describe(`${engine}: receipts and read markers`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    let roomId: string;
    let roomNid: number;
    let rid: string;
    let txn = 0;

    const send = async (who: User, content: Json): Promise<string> => {
      const res = await who.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/t${++txn}`, {
        msgtype: 'm.text',
        ...content,
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.event_id as string;
    };
    const receipt = (who: User, type: string, eventId: string, body: Json = {}) =>
      who.post(`/_matrix/client/v3/rooms/${rid}/receipt/${type}/${encodeURIComponent(eventId)}`, body);
    const receiptsFor = async (viewer: string, since: number | null = null) => {
      const map = await receiptEventsForRooms(
        server.hs.storage.db,
        new Map([[roomNid, roomId]]),
        viewer,
        since,
        server.hs.storage.stream.current,
      );
      return map.get(roomId)?.content ?? {};
    };
    const fullyRead = async (who: User) =>
      who.get(`/_matrix/client/v3/user/${who.userId}/rooms/${rid}/account_data/m.fully_read`);

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      carol = await server.user('carol');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      roomId = created.body.room_id as string;
      rid = encodeURIComponent(roomId);
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);
      const row = await server.hs.storage.db
        .selectFrom('rooms')
        .select('room_nid')
        .where('room_id', '=', roomId)
        .executeTakeFirstOrThrow();
      roomNid = Number(row.room_nid);
    });
    after(() => server.close());

    it('stores m.read receipts visible to everyone, as one m.receipt event per room', async () => {
      const e1 = await send(alice, { body: 'one' });
      const res = await receipt(bob, 'm.read', e1);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, {});
      for (const viewer of [alice.userId, bob.userId]) {
        const content = await receiptsFor(viewer);
        const data = content[e1]?.['m.read']?.[bob.userId];
        assert.ok(data, JSON.stringify(content));
        assert.equal(typeof data.ts, 'number');
        assert.equal('thread_id' in data, false);
      }
      const map = await receiptEventsForRooms(
        server.hs.storage.db,
        new Map([[roomNid, roomId]]),
        alice.userId,
        null,
        0,
      );
      assert.equal(map.size, 0, 'nothing up to position 0');
    });

    it('shows m.read.private only to its owner', async () => {
      const e = await send(alice, { body: 'secret' });
      assert.equal((await receipt(bob, 'm.read.private', e)).status, 200);
      assert.ok((await receiptsFor(bob.userId))[e]?.['m.read.private']?.[bob.userId]);
      assert.equal((await receiptsFor(alice.userId))[e], undefined);
      const rows = await server.hs.storage.db
        .selectFrom('receipts')
        .select(['user_id', 'receipt_type', 'event_id'])
        .where('receipt_type', '=', 'm.read.private')
        .execute();
      assert.deepEqual(rows, [{ user_id: bob.userId, receipt_type: 'm.read.private', event_id: e }]);
    });

    it('keeps one receipt per user, type and thread, moving only forward, and reports deltas', async () => {
      const early = await send(alice, { body: 'early' });
      const late = await send(alice, { body: 'late' });
      const since = server.hs.storage.stream.current;
      assert.equal((await receipt(bob, 'm.read', late)).status, 200);
      assert.equal((await receipt(bob, 'm.read', early)).status, 200);
      const all = await receiptsFor(alice.userId);
      const bobRead = Object.entries(all).filter(([, t]) => t['m.read']?.[bob.userId]);
      assert.deepEqual(
        bobRead.map(([id]) => id),
        [late],
      );
      const delta = await receiptsFor(alice.userId, since);
      assert.deepEqual(Object.keys(delta), [late]);
      assert.deepEqual(await receiptsFor(alice.userId, server.hs.storage.stream.current), {});
    });

    it('keeps threaded receipts apart and reports their thread_id', async () => {
      const root = await send(alice, { body: 'root' });
      const reply = await send(alice, {
        body: 'in thread',
        'm.relates_to': { rel_type: 'm.thread', event_id: root },
      });
      const main = await send(alice, { body: 'main timeline' });
      assert.equal((await receipt(carol, 'm.read', main)).status, 403, 'carol is not joined');
      assert.equal((await receipt(bob, 'm.read', reply, { thread_id: root })).status, 200);
      assert.equal((await receipt(bob, 'm.read', main, { thread_id: 'main' })).status, 200);
      assert.equal(
        (await receipt(bob, 'm.read', root, { thread_id: root })).status,
        200,
        'root is in its thread',
      );
      const content = await receiptsFor(alice.userId);
      assert.deepEqual(content[reply]?.['m.read']?.[bob.userId]?.thread_id, root);
      assert.deepEqual(content[main]?.['m.read']?.[bob.userId]?.thread_id, 'main');
      const rows = await server.hs.storage.db
        .selectFrom('receipts')
        .select(['thread_id', 'event_id'])
        .where('user_id', '=', bob.userId)
        .where('receipt_type', '=', 'm.read')
        .orderBy('thread_id')
        .execute();
      assert.deepEqual(
        rows.map((r) => r.thread_id),
        ['', root, 'main'].sort(),
      );

      const notInThread = await receipt(bob, 'm.read', main, { thread_id: root });
      assert.equal(notInThread.status, 400);
      assert.equal(notInThread.body.errcode, 'M_INVALID_PARAM');
      const notMain = await receipt(bob, 'm.read', reply, { thread_id: 'main' });
      assert.equal(notMain.status, 400);
      assert.equal(notMain.body.errcode, 'M_INVALID_PARAM');
    });

    it('rejects invalid receipt types and thread ids with M_INVALID_PARAM', async () => {
      const e = await send(alice, { body: 'x' });
      for (const [type, body] of [
        ['m.unknown', {}],
        ['m.read', { thread_id: '' }],
        ['m.read', { thread_id: 5 }],
        ['m.fully_read', { thread_id: 'main' }],
      ] as const) {
        const res = await receipt(bob, type, e, body);
        assert.equal(res.status, 400, `${type} ${JSON.stringify(body)}`);
        assert.equal(res.body.errcode, 'M_INVALID_PARAM');
      }
      const badEvent = await receipt(bob, 'm.read', 'not-an-event');
      assert.equal(badEvent.status, 400);
      assert.equal(badEvent.body.errcode, 'M_INVALID_PARAM');
    });

    it('refuses users not joined to the room with 403 M_FORBIDDEN', async () => {
      const e = await send(alice, { body: 'members only' });
      const res = await receipt(carol, 'm.read', e);
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      const markers = await carol.post(`/_matrix/client/v3/rooms/${rid}/read_markers`, { 'm.read': e });
      assert.equal(markers.status, 403);
      assert.equal(markers.body.errcode, 'M_FORBIDDEN');
      const unknownRoom = await carol.post(
        `/_matrix/client/v3/rooms/${encodeURIComponent('!nowhere:test.local')}/receipt/m.read/${encodeURIComponent(e)}`,
        {},
      );
      assert.equal(unknownRoom.status, 403);
      assert.equal(unknownRoom.body.errcode, 'M_FORBIDDEN');
    });

    it('accepts and ignores a receipt for an unknown event, as Synapse', async () => {
      const before = await receiptsFor(bob.userId);
      const res = await receipt(bob, 'm.read', '$unknown:test.local');
      assert.equal(res.status, 200);
      assert.deepEqual(await receiptsFor(bob.userId), before);
    });

    it('sets m.fully_read through the receipt endpoint, forward only, 404 for an unknown event', async () => {
      const e1 = await send(alice, { body: 'fr1' });
      const e2 = await send(alice, { body: 'fr2' });
      assert.equal((await receipt(bob, 'm.fully_read', e2)).status, 200);
      assert.deepEqual((await fullyRead(bob)).body, { event_id: e2 });
      assert.equal((await receipt(bob, 'm.fully_read', e1)).status, 200);
      assert.deepEqual((await fullyRead(bob)).body, { event_id: e2 }, 'does not move back');
      const unknown = await receipt(bob, 'm.fully_read', '$missing:test.local');
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
      const content = await receiptsFor(bob.userId);
      assert.equal(content[e2]?.['m.fully_read'], undefined, 'm.fully_read is not a receipt');
    });

    it('sets the marker and both receipts through /read_markers', async () => {
      const e1 = await send(alice, { body: 'rm1' });
      const e2 = await send(alice, { body: 'rm2' });
      const res = await bob.post(`/_matrix/client/v3/rooms/${rid}/read_markers`, {
        'm.fully_read': e1,
        'm.read': e2,
        'm.read.private': e2,
        'org.example.unknown': e2,
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual((await fullyRead(bob)).body, { event_id: e1 });
      const mine = await receiptsFor(bob.userId);
      assert.ok(mine[e2]?.['m.read']?.[bob.userId]);
      assert.ok(mine[e2]?.['m.read.private']?.[bob.userId]);
      const theirs = await receiptsFor(alice.userId);
      assert.ok(theirs[e2]?.['m.read']?.[bob.userId]);
      assert.equal(theirs[e2]?.['m.read.private'], undefined);

      const bad = await bob.post(`/_matrix/client/v3/rooms/${rid}/read_markers`, { 'm.read': 12 });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.errcode, 'M_BAD_JSON');
    });

    it('still refuses setting m.fully_read as plain room account data', async () => {
      const res = await bob.put(
        `/_matrix/client/v3/user/${bob.userId}/rooms/${rid}/account_data/m.fully_read`,
        {
          event_id: '$x',
        },
      );
      assert.equal(res.status, 405);
    });
  });
}
