import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';

type Room = {
  timeline: { events: Json[]; limited: boolean; prev_batch: string };
  state: { events: Json[] };
  summary?: Json;
};

const joinOf = (body: Json, roomId: string): Room | undefined =>
  ((body.rooms as Json | undefined)?.join as Record<string, Room> | undefined)?.[roomId];

for (const engine of ENGINES) {
  describe(`${engine}: /sync`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('initial sync returns joined rooms with state and timeline, then incremental sync returns only new events', async () => {
      const alice = await server.user('s_alice');
      const created = await alice.post('/_matrix/client/v3/createRoom', { name: 'Sync room' });
      const roomId = created.body.room_id as string;
      const rid = encodeURIComponent(roomId);
      for (let i = 0; i < 3; i++)
        await alice.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/m${i}`, {
          msgtype: 'm.text',
          body: `hello ${i}`,
        });

      const initial = await alice.get('/_matrix/client/v3/sync');
      assert.equal(initial.status, 200, JSON.stringify(initial.body));
      const room = joinOf(initial.body, roomId);
      assert.ok(room, 'room in rooms.join');
      const bodies = room.timeline.events
        .filter((e) => e.type === 'm.room.message')
        .map((e) => (e.content as Json).body);
      assert.deepEqual(bodies, ['hello 0', 'hello 1', 'hello 2']);
      const own = room.timeline.events.find((e) => (e.content as Json).body === 'hello 2');
      assert.equal((own?.unsigned as Json).transaction_id, 'm2');
      const stateTypes = new Set([...room.state.events, ...room.timeline.events].map((e) => e.type));
      assert.ok(stateTypes.has('m.room.create'));
      assert.ok(stateTypes.has('m.room.name'));
      assert.equal((room.summary as Json)['m.joined_member_count'], 1);
      assert.ok(
        (initial.body.account_data as { events: Json[] }).events.some((e) => e.type === 'm.push_rules'),
      );

      const since = initial.body.next_batch as string;
      const empty = await alice.get(`/_matrix/client/v3/sync?since=${since}&timeout=0`);
      assert.equal(empty.status, 200);
      assert.equal(joinOf(empty.body, roomId), undefined);

      await alice.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/m9`, {
        msgtype: 'm.text',
        body: 'later',
      });
      const inc = await alice.get(`/_matrix/client/v3/sync?since=${since}&timeout=0`);
      const incRoom = joinOf(inc.body, roomId);
      assert.ok(incRoom);
      assert.deepEqual(
        incRoom.timeline.events.map((e) => (e.content as Json).body),
        ['later'],
      );
      assert.equal(incRoom.timeline.limited, false);
    });

    it('wakes a long-poll when a message arrives', async () => {
      const bob = await server.user('s_bob');
      const carol = await server.user('s_carol');
      const created = await bob.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const rid = encodeURIComponent(created.body.room_id as string);
      await carol.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
      const first = await carol.get('/_matrix/client/v3/sync');
      const started = Date.now();
      const poll = carol.get(
        `/_matrix/client/v3/sync?since=${first.body.next_batch as string}&timeout=20000`,
      );
      await new Promise((r) => setTimeout(r, 100));
      await bob.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/w1`, {
        msgtype: 'm.text',
        body: 'wake up',
      });
      const res = await poll;
      assert.ok(Date.now() - started < 10_000, 'answered long before the timeout');
      const room = joinOf(res.body, created.body.room_id as string);
      assert.deepEqual(
        room?.timeline.events.map((e) => (e.content as Json).body),
        ['wake up'],
      );
    });

    it('times out with an empty, valid response and a new next_batch', async () => {
      const dan = await server.user('s_dan');
      const first = await dan.get('/_matrix/client/v3/sync');
      const res = await dan.get(
        `/_matrix/client/v3/sync?since=${first.body.next_batch as string}&timeout=200`,
      );
      assert.equal(res.status, 200);
      assert.equal(typeof res.body.next_batch, 'string');
      assert.deepEqual(res.body.rooms, {});
    });

    it('rejects malformed tokens with 400 M_INVALID_PARAM and tolerates tokens from the future', async () => {
      const eve = await server.user('s_eve');
      const bad = await eve.get('/_matrix/client/v3/sync?since=garbage');
      assert.equal(bad.status, 400);
      assert.equal(bad.body.errcode, 'M_INVALID_PARAM');
      const future = await eve.get('/_matrix/client/v3/sync?since=s999999999&timeout=0');
      assert.equal(future.status, 200);
    });

    it('delivers invites with stripped state and a gappy sync with a working prev_batch', async () => {
      const fay = await server.user('s_fay');
      const gus = await server.user('s_gus');
      const g0 = await gus.get('/_matrix/client/v3/sync');
      const created = await fay.post('/_matrix/client/v3/createRoom', {
        name: 'Invite room',
        invite: [gus.userId],
      });
      const roomId = created.body.room_id as string;
      const inv = await gus.get(`/_matrix/client/v3/sync?since=${g0.body.next_batch as string}&timeout=0`);
      const invites = (inv.body.rooms as Json).invite as Record<string, { invite_state: { events: Json[] } }>;
      const types = invites[roomId]?.invite_state.events.map((e) => e.type);
      assert.ok(types?.includes('m.room.name'));
      assert.ok(types?.includes('m.room.member'));
      const rid = encodeURIComponent(roomId);
      await gus.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
      const j = await gus.get(`/_matrix/client/v3/sync?since=${inv.body.next_batch as string}&timeout=0`);
      assert.ok(joinOf(j.body, roomId));
      for (let i = 0; i < 15; i++)
        await fay.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/g${i}`, {
          msgtype: 'm.text',
          body: `g${i}`,
        });
      const gappy = await gus.get(`/_matrix/client/v3/sync?since=${j.body.next_batch as string}&timeout=0`);
      const room = joinOf(gappy.body, roomId);
      assert.equal(room?.timeline.limited, true);
      assert.equal(room?.timeline.events.length, 10);
      assert.equal((room?.timeline.events[0]?.content as Json).body, 'g5');
    });
  });
}
