/**
 * Simplified sliding sync checked with a real client: matrix-js-sdk 37's `SlidingSync` (driven by the sdk's own
 * SlidingSyncSdk through `startClient({ slidingSync })`, so its to_device, account_data, typing and receipts
 * extensions are on) keeps a list of 50 rooms in step with the server while another user sends into rooms inside and
 * outside the window, on every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as sdk from 'matrix-js-sdk';
import {
  SlidingSync,
  SlidingSyncEvent,
  SlidingSyncState,
  type MSC3575RoomData,
} from 'matrix-js-sdk/lib/sliding-sync.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createJsClient, messageBodies, silenceSdkLogs, waitUntil } from '../clients/js-sdk.js';
import { createRoom, join, ok, say } from './helpers-ext.js';

const ROOMS = 60;
const WINDOW = 50;

for (const engine of ENGINES) {
  describe(`${engine}: matrix-js-sdk SlidingSync`, () => {
    let server: TestServer;
    before(async () => {
      silenceSdkLogs();
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('keeps a list of 50 in step while another user sends inside and outside the window', async () => {
      const alice = await server.user('ss_alice');
      const bob = await server.user('ss_bob');
      const rooms: string[] = []; // oldest first: the window holds the newest 50
      for (let i = 0; i < ROOMS; i++) {
        const roomId = await createRoom(alice, { name: `room ${i}`, invite: [bob.userId] });
        await join(bob, roomId);
        rooms.push(roomId);
      }
      const client = createJsClient({ ...alice, baseUrl: server.url });
      const list = {
        ranges: [[0, WINDOW - 1]],
        timeline_limit: 1,
        required_state: [
          ['m.room.name', ''],
          ['m.room.member', '$ME'],
          ['m.room.member', '$LAZY'],
        ],
      };
      const ss = new SlidingSync(server.url, new Map([['all', list]]), { timeline_limit: 1 }, client, 30_000);
      const updates: { roomId: string; data: MSC3575RoomData }[] = [];
      ss.on(SlidingSyncEvent.RoomData, (roomId, data) => void updates.push({ roomId, data }));
      let responses = 0;
      ss.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
        if (err) throw err;
        if (state === SlidingSyncState.Complete && resp) responses++;
      });
      await client.startClient({ slidingSync: ss });
      try {
        await waitUntil(client, 'the first response', () => responses >= 1, 20_000);
        assert.equal(ss.getListData('all')?.joinedCount, ROOMS);
        const first = new Set(updates.map((u) => u.roomId));
        assert.deepEqual(first, new Set(rooms.slice(ROOMS - WINDOW)), 'the newest 50 rooms');
        for (const u of updates) assert.equal(u.data.initial, true);
        assert.equal(client.getRooms().length, WINDOW);

        const lastBody = (roomId: string) => {
          const room = client.getRoom(roomId);
          return room ? messageBodies(room.getLiveTimeline().getEvents()).at(-1) : undefined;
        };
        // Into a room inside the window: an update of a room the client has.
        updates.length = 0;
        const inside = rooms[ROOMS - 20] as string;
        await say(bob, inside, 'inside 1');
        await waitUntil(client, 'the message inside the window', () => lastBody(inside) === 'inside 1');
        const insideUpdate = updates.find((u) => u.roomId === inside);
        assert.ok(insideUpdate && insideUpdate.data.initial !== true, 'a known room is updated, not re-sent');

        // Into a room outside the window: it moves to the top, and arrives whole (initial) with the message.
        updates.length = 0;
        const outside = rooms[0] as string;
        assert.equal(client.getRoom(outside), null);
        await say(bob, outside, 'outside 1');
        await waitUntil(client, 'the room from outside the window', () => lastBody(outside) === 'outside 1');
        const outsideUpdate = updates.find((u) => u.roomId === outside);
        assert.equal(outsideUpdate?.data.initial, true);
        assert.equal(client.getRoom(outside)?.name, 'room 0');

        // A burst into rooms on both sides of the window: every one ends with its last message, in step.
        const burst = [rooms[5], rooms[ROOMS - 1], rooms[3], rooms[ROOMS - 30], rooms[1]] as string[];
        for (const [i, roomId] of burst.entries()) await say(bob, roomId, `burst ${i}`);
        await waitUntil(client, 'every burst message', () =>
          burst.every((roomId, i) => lastBody(roomId) === `burst ${i}`),
        );
        assert.equal(ss.getListData('all')?.joinedCount, ROOMS);

        // The typing and receipts extensions reach the sdk's room models.
        const eventId = await say(bob, inside, 'read me');
        await ok(
          bob.put(
            `/_matrix/client/v3/rooms/${encodeURIComponent(inside)}/typing/${encodeURIComponent(bob.userId)}`,
            {
              typing: true,
              timeout: 30_000,
            },
          ),
        );
        await waitUntil(
          client,
          'bob typing',
          () => client.getRoom(inside)?.getMember(bob.userId)?.typing === true,
        );
        await ok(
          bob.post(
            `/_matrix/client/v3/rooms/${encodeURIComponent(inside)}/receipt/m.read/${encodeURIComponent(eventId)}`,
            {},
          ),
        );
        await waitUntil(client, 'bob’s receipt', () =>
          client
            .getRoom(inside)
            ?.getReceiptsForEvent(new sdk.MatrixEvent({ event_id: eventId }))
            .some((r) => r.userId === bob.userId),
        );
      } finally {
        client.stopClient();
        client.removeAllListeners();
      }
    });
  });
}
