/**
 * Sliding sync over HTTP on both engines: remembered notification counts drop a message redacted after it was
 * counted (and a later message still adds to them), a new read receipt and a new m.direct apply to the next response
 * (both are remembered until a write), and the list order comes from the derived bump stamps, also
 * after a restart: from the table the bump index wrote back, plus what it then had only in memory.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, putState, text, type User } from '../sync/sync-util.js';
import { byBump, listBody, ss } from './ss-util.js';
import { bumpIndexFor } from '../../src/storage/sliding-sync-bumps.js';

for (const engine of ENGINES) {
  describe(`${engine}: sliding sync unread counts and bump stamps`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('ub_alice');
      bob = await server.user('ub_bob');
    });
    after(() => server.close());

    it('drops a redacted message from a remembered notification count', async () => {
      const room = await createRoom(alice, { preset: 'public_chat', name: 'Unread' });
      await join(bob, room);
      const body = listBody([0, 19], { conn_id: 'redact' });
      await text(alice, room, 'one');
      const doomed = await text(alice, room, 'two');
      let r = await ss(bob, body);
      assert.equal(r.rooms[room]?.notification_count, 2);
      await text(alice, room, 'three');
      r = await ss(bob, body, { pos: r.pos });
      assert.equal(r.rooms[room]?.notification_count, 3, 'the remembered count grows by the new message');

      const res = await alice.put(`/_matrix/client/v3/rooms/${enc(room)}/redact/${enc(doomed)}/ub1`, {});
      assert.equal(res.status, 200);
      r = await ss(bob, body, { pos: r.pos });
      assert.equal(r.rooms[room]?.notification_count, 2, 'the redacted message no longer counts');

      await text(alice, room, 'four');
      r = await ss(bob, body, { pos: r.pos });
      assert.equal(r.rooms[room]?.notification_count, 3);
      // A fresh connection counts the same.
      const fresh = await ss(bob, listBody([0, 19], { conn_id: 'redact-fresh' }));
      assert.equal(fresh.rooms[room]?.notification_count, 3);
    });

    it('follows a new read receipt and a new m.direct on the next response (remembered reads)', async () => {
      const room = await createRoom(alice, { preset: 'public_chat', name: 'Receipts' });
      await join(bob, room);
      const body = listBody([0, 0], { conn_id: 'receipt' });
      await text(alice, room, 'one');
      const last = await text(alice, room, 'two');
      let r = await ss(bob, body);
      assert.equal(r.rooms[room]?.notification_count, 2);
      assert.equal(r.rooms[room]?.is_dm, undefined);
      const res = await bob.post(`/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(last)}`, {});
      assert.equal(res.status, 200);
      const direct = await bob.put(`/_matrix/client/v3/user/${enc(bob.userId)}/account_data/m.direct`, {
        [alice.userId]: [room],
      });
      assert.equal(direct.status, 200);
      await text(alice, room, 'three');
      r = await ss(bob, body, { pos: r.pos });
      assert.equal(r.rooms[room]?.notification_count, 1, 'counted from the new receipt');
      assert.equal(r.rooms[room]?.is_dm, true, 'the new m.direct is read');
    });

    it('orders rooms by their latest bump event, also after a restart', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const id = await createRoom(alice, { preset: 'public_chat', name: `Bump ${i}` });
        await join(bob, id);
        await text(alice, id, `hello ${i}`);
        ids.push(id);
      }
      const [r0, r1, r2] = ids as [string, string, string];
      const filters = { room_types: [null] };
      const body = (conn: string) => listBody([0, 2], { conn_id: conn, filters });
      assert.deepEqual(byBump(await ss(bob, body('b1'))).slice(0, 3), [r2, r1, r0]);
      await text(alice, r0, 'bump r0');
      // A state event is not a bump event: r1 stays behind r2.
      await putState(alice, r1, 'm.room.topic', { topic: 'no bump' });
      const first = await ss(bob, body('b2'));
      assert.deepEqual(byBump(first).slice(0, 3), [r0, r2, r1]);
      assert.ok((first.rooms[r0]?.bump_stamp ?? 0) > (first.rooms[r2]?.bump_stamp ?? 0));

      // What is known so far goes to the table; r1's next message stays in memory only when the server stops.
      await bumpIndexFor(server.hs.storage.db).flush();
      const mark = await server.hs.storage.db
        .selectFrom('sliding_sync_bump_mark')
        .select('stream')
        .executeTakeFirstOrThrow();
      assert.ok(Number(mark.stream) > 0);
      await text(alice, r1, 'bump r1');
      await server.stop();
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
      await text(alice, r2, 'bump r2 after restart');
      assert.deepEqual(byBump(await ss(bob, body('b3'))).slice(0, 3), [r2, r1, r0]);
      // The position handed out just before the restart was saved.
      const resumed = await ss(bob, body('b2'), { pos: first.pos });
      assert.ok(Object.keys(resumed.rooms).includes(r1));
    });

    it('keeps the overlay a reader applies when a flush commits during its table read', async () => {
      const room = await createRoom(alice, { preset: 'public_chat', name: 'Overlay' });
      const at = await text(alice, room, 'in memory only');
      const { db, stream } = server.hs.storage;
      const index = bumpIndexFor(db);
      await index.ensure(stream.current);
      const row = await db
        .selectFrom('rooms')
        .select('room_nid')
        .where('room_id', '=', room)
        .executeTakeFirstOrThrow();
      const ordering = await db
        .selectFrom('events')
        .select('stream_ordering')
        .where('event_id', '=', at)
        .executeTakeFirstOrThrow();
      // The table read sees the rows from before the flush; the flush then commits the room and prunes the overlay.
      const { overlay } = await index.read(async () => {
        await index.flush();
        return null;
      });
      assert.equal(overlay.get(Number(row.room_nid))?.bump, Number(ordering.stream_ordering));
    });
  });
}
