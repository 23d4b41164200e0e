/**
 * The group commit moves the forward extremity of every room of a group in one statement: after concurrent sends
 * into many rooms each room has exactly one extremity, its last event; a room whose stored extremities disagree with
 * the writer's head (none, or two) gets them replaced by its new event. Every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';
import { createRoom, enc } from './util.js';

type User = Client & { userId: string; deviceId: string };

for (const engine of ENGINES) {
  describe(`${engine}: group commit of forward extremities`, () => {
    let server: TestServer;
    let alice: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
    });
    after(async () => {
      await server?.close();
    });

    async function send(roomId: string, body: string): Promise<string> {
      const res = await alice.put(
        `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${enc(body)}`,
        {
          msgtype: 'm.text',
          body,
        },
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.event_id as string;
    }

    /** The event ids of the room's stored forward extremities. */
    async function extremities(roomId: string): Promise<string[]> {
      const rows = await server.hs.storage.db
        .selectFrom('forward_extremities as f')
        .innerJoin('rooms as r', 'r.room_nid', 'f.room_nid')
        .innerJoin('events as e', 'e.event_nid', 'f.event_nid')
        .select('e.event_id')
        .where('r.room_id', '=', roomId)
        .execute();
      return rows.map((r) => r.event_id);
    }

    async function roomNid(roomId: string): Promise<number> {
      const row = await server.hs.storage.db
        .selectFrom('rooms')
        .select('room_nid')
        .where('room_id', '=', roomId)
        .executeTakeFirstOrThrow();
      return Number(row.room_nid);
    }

    it('leaves each room of concurrent sends with its last event as its one extremity', async () => {
      const rooms: string[] = [];
      for (let i = 0; i < 6; i++) rooms.push(await createRoom(alice));
      for (let round = 0; round < 3; round++) {
        const sent = await Promise.all(rooms.map((r, i) => send(r, `r${round}-${i}`)));
        for (const [i, r] of rooms.entries()) assert.deepEqual(await extremities(r), [sent[i]]);
      }
    });

    it('replaces extremities that disagree with the head (none, or two)', async () => {
      const none = await createRoom(alice);
      const two = await createRoom(alice);
      const fine = await createRoom(alice);
      await Promise.all([send(none, 'n0'), send(two, 't0'), send(fine, 'f0')]);
      const db = server.hs.storage.db;
      await db
        .deleteFrom('forward_extremities')
        .where('room_nid', '=', await roomNid(none))
        .execute();
      const twoNid = await roomNid(two);
      const create = await db
        .selectFrom('events')
        .select('event_nid')
        .where('room_nid', '=', twoNid)
        .where('type', '=', 'm.room.create')
        .executeTakeFirstOrThrow();
      await db
        .insertInto('forward_extremities')
        .values({ room_nid: twoNid, event_nid: create.event_nid })
        .execute();
      const [n1, t1, f1] = await Promise.all([send(none, 'n1'), send(two, 't1'), send(fine, 'f1')]);
      assert.deepEqual(await extremities(none), [n1]);
      assert.deepEqual(await extremities(two), [t1]);
      assert.deepEqual(await extremities(fine), [f1]);
    });
  });
}
