/**
 * Hearth's /sync checked with a real client: matrix-js-sdk clients (no crypto) against a Hearth on an ephemeral
 * port, on every engine. Each test drives one feature through the sdk and asserts on the sdk's own model of the
 * room (timeline, members, receipts, account data, presence), so it fails if Hearth's wire format or its sync
 * delivery breaks.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import * as sdk from 'matrix-js-sdk';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import {
  createJsClient,
  jsClient,
  linkedTimelineEvents,
  messageBodies,
  ResumableMemoryStore,
  startJsClient,
  stopAllJsClients,
  stopJsClient,
  waitForEvent,
  waitForRoom,
  waitUntil,
  withTimeout,
  type HearthUser,
} from './js-sdk.js';

declare module 'matrix-js-sdk/lib/@types/event.js' {
  interface AccountDataEvents {
    'org.hearth.test.settings': { n: number };
    'org.hearth.test.marker': { n: number };
  }
}

const PASSWORD = 'correct horse battery staple';

/** Logs the user in again: a second device with its own token. */
async function secondDevice(server: TestServer, user: HearthUser): Promise<HearthUser> {
  const localpart = user.userId.slice(1, user.userId.indexOf(':'));
  const res = await server.client().post('/_matrix/client/v3/login', {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user: localpart },
    password: PASSWORD,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return {
    baseUrl: server.url,
    userId: res.body.user_id as string,
    deviceId: res.body.device_id as string,
    token: res.body.access_token as string,
  };
}

/** The live-timeline event of the room whose body is `body`. */
function eventWithBody(room: sdk.Room, body: string): sdk.MatrixEvent | undefined {
  return room
    .getLiveTimeline()
    .getEvents()
    .find((e) => (e.getContent() as { body?: unknown }).body === body);
}

/** Waits until `client` has synced past everything committed before this call (its own account data echo). */
let markerSeq = 0;
async function syncBarrier(client: sdk.MatrixClient): Promise<void> {
  await withTimeout(
    client.setAccountData('org.hearth.test.marker', { n: ++markerSeq }),
    10_000,
    `${client.getUserId() ?? '?'} to see its own account data over /sync`,
  );
}

async function sendText(client: sdk.MatrixClient, roomId: string, body: string): Promise<string> {
  const res = await client.sendTextMessage(roomId, body);
  return res.event_id;
}

for (const engine of ENGINES) {
  describe(`${engine}: matrix-js-sdk clients in step over /sync`, () => {
    let server: TestServer;
    let n = 0;
    let users: HearthUser[] = [];
    /** A fresh user with a token (unique localparts: tests share one server). */
    const user = async (name: string): Promise<HearthUser> => {
      const u = await server.user(`${name}${++n}`);
      users.push(u);
      return u;
    };

    before(async () => {
      server = await startTestServer(engine);
    });
    afterEach(async () => {
      stopAllJsClients();
      // A stopped client's last /sync long-poll is still waiting on the server (and would hold its shutdown for
      // the poll timeout): a write for each user answers them.
      for (const u of users) {
        const userId = encodeURIComponent(u.userId);
        await server
          .client(u.token)
          .put(`/_matrix/client/v3/user/${userId}/account_data/org.hearth.test.release`, {});
      }
      users = [];
    });
    after(async () => {
      // A request the sdk aborted while its connection was being set up leaves a connection that never sent a
      // request; Node does not count it as idle, so a graceful close would wait out shutdown_grace_ms for it.
      for (const app of server.hs.apps) app.server.closeAllConnections();
      await server.close();
    });

    /** A room created by `owner` and joined by every other user, over plain HTTP. */
    async function sharedRoom(owner: HearthUser, others: HearthUser[], name = 'Shared'): Promise<string> {
      const oc = server.client(owner.token);
      const created = await oc.post('/_matrix/client/v3/createRoom', { preset: 'public_chat', name });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const roomId = created.body.room_id as string;
      for (const o of others) {
        const j = await server
          .client(o.token)
          .post(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, {});
        assert.equal(j.status, 200, JSON.stringify(j.body));
      }
      return roomId;
    }

    for (const lazyLoadMembers of [false, true]) {
      it(`invite, join, messages, name and topic, leave (lazyLoadMembers=${lazyLoadMembers})`, async () => {
        const alice = await user('alice');
        const bob = await user('bob');
        const ac = await jsClient(alice, { lazyLoadMembers });
        const bc = await jsClient(bob, { lazyLoadMembers });

        const { room_id: roomId } = await ac.createRoom({
          name: 'Hearth lounge',
          preset: sdk.Preset.PrivateChat,
        });
        const aRoom = await waitForRoom(ac, roomId, 'join');
        await waitUntil(ac, 'alice sees the room name', () => aRoom.name === 'Hearth lounge');

        // Invite: bob's client sees the room as an invite, named from the stripped state, invited by alice.
        await ac.invite(roomId, bob.userId);
        const invited = await waitForRoom(bc, roomId, 'invite');
        assert.equal(invited.name, 'Hearth lounge');
        const inviteEvent = invited.getMember(bob.userId)?.events.member;
        assert.equal(inviteEvent?.getSender(), alice.userId);
        assert.equal(inviteEvent?.getContent().membership, 'invite');

        // Join: both sides see bob joined.
        await bc.joinRoom(roomId);
        const bRoom = await waitForRoom(bc, roomId, 'join');
        await waitUntil(ac, 'alice sees bob join', () => aRoom.getMember(bob.userId)?.membership === 'join');
        await waitUntil(bc, 'bob sees 2 joined members', () => bRoom.getJoinedMemberCount() === 2);

        // Messages both ways, with the right sender and id; alice's local echo is replaced, not duplicated.
        const helloId = await sendText(ac, roomId, 'hello bob');
        const hello = await waitUntil(bc, 'bob sees "hello bob"', () => eventWithBody(bRoom, 'hello bob'));
        assert.equal(hello.getSender(), alice.userId);
        assert.equal(hello.getId(), helloId);
        const hiId = await sendText(bc, roomId, 'hi alice');
        const hi = await waitUntil(ac, 'alice sees "hi alice"', () => eventWithBody(aRoom, 'hi alice'));
        assert.equal(hi.getSender(), bob.userId);
        assert.equal(hi.getId(), hiId);
        const own = aRoom
          .getLiveTimeline()
          .getEvents()
          .filter((e) => (e.getContent() as { body?: unknown }).body === 'hello bob');
        assert.equal(own.length, 1, 'remote echo of alice’s message merged with its local echo');
        assert.equal(own[0]?.getId(), helloId);
        assert.equal(own[0]?.status, null, 'alice’s message is no longer pending');
        assert.deepEqual(messageBodies(bRoom.getLiveTimeline().getEvents()), ['hello bob', 'hi alice']);

        // State changes: name and topic reach bob's room model.
        await ac.setRoomName(roomId, 'Renamed lounge');
        await ac.setRoomTopic(roomId, 'Sync, checked by a real client');
        await waitUntil(bc, 'bob sees the new name', () => bRoom.name === 'Renamed lounge');
        await waitUntil(
          bc,
          'bob sees the new topic',
          () =>
            bRoom.currentState.getStateEvents(sdk.EventType.RoomTopic, '')?.getContent().topic ===
            'Sync, checked by a real client',
        );

        // Leave: alice sees bob's membership change; bob's client moves the room to left rooms.
        await bc.leave(roomId);
        await waitUntil(
          ac,
          'alice sees bob leave',
          () => aRoom.getMember(bob.userId)?.membership === 'leave',
        );
        await waitUntil(bc, 'bob sees himself leave', () => bRoom.getMyMembership() === 'leave');
        // Bob no longer receives the room's messages.
        await sendText(ac, roomId, 'after bob left');
        await waitUntil(ac, 'alice sees her message', () => eventWithBody(aRoom, 'after bob left'));
        await syncBarrier(bc);
        assert.equal(eventWithBody(bRoom, 'after bob left'), undefined);
      });
    }

    for (const lazyLoadMembers of [false, true]) {
      it(`member list with lazyLoadMembers=${lazyLoadMembers}`, async () => {
        const alice = await user('alice');
        const bob = await user('bob');
        const carol = await user('carol');
        const roomId = await sharedRoom(alice, [carol, bob]);
        // Carol's join falls out of the initial timeline window, and she never speaks.
        const ac = server.client(alice.token);
        for (let i = 0; i < 25; i++) {
          const r = await ac.put(
            `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/ll${i}`,
            { msgtype: 'm.text', body: `filler ${i}` },
          );
          assert.equal(r.status, 200);
        }
        const bc = await jsClient(bob, { lazyLoadMembers, initialSyncLimit: 20 });
        const room = await waitForRoom(bc, roomId, 'join');
        assert.equal(room.getJoinedMemberCount(), 3, 'm.joined_member_count of the summary');
        assert.equal(room.getMember(alice.userId)?.membership, 'join');
        assert.equal(room.getMember(bob.userId)?.membership, 'join');
        if (lazyLoadMembers) {
          assert.equal(room.getMember(carol.userId), null, 'carol’s member event is lazy-loaded');
          await withTimeout(room.loadMembersIfNeeded(), 10_000, 'GET /members');
        }
        assert.equal(room.getMember(carol.userId)?.membership, 'join');
        assert.deepEqual(
          room
            .getJoinedMembers()
            .map((m) => m.userId)
            .sort(),
          [alice.userId, bob.userId, carol.userId].sort(),
        );
      });
    }

    it('typing notifications start and stop', async () => {
      const alice = await user('alice');
      const bob = await user('bob');
      const roomId = await sharedRoom(alice, [bob]);
      const bc = await jsClient(bob);
      const room = await waitForRoom(bc, roomId, 'join');
      const ac = createJsClient(alice); // HTTP only: alice needs no sync loop to type

      const startEvent = waitForEvent(
        bc,
        sdk.RoomMemberEvent.Typing,
        (_ev, member) => member.userId === alice.userId && member.typing,
      );
      await ac.sendTyping(roomId, true, 30_000);
      const [typingEv] = await startEvent;
      assert.deepEqual(typingEv.getContent().user_ids, [alice.userId]);
      assert.equal(room.getMember(alice.userId)?.typing, true);
      assert.equal(room.getMember(bob.userId)?.typing, false);

      await ac.sendTyping(roomId, false, 0);
      await waitUntil(bc, 'alice stops typing', () => room.getMember(alice.userId)?.typing === false);
    });

    it('read receipts and read markers (m.fully_read)', async () => {
      const alice = await user('alice');
      const bob = await user('bob');
      const roomId = await sharedRoom(alice, [bob]);
      const ac = await jsClient(alice);
      const ac2 = await jsClient(await secondDevice(server, alice));
      const bc = await jsClient(bob);
      const bRoom = await waitForRoom(bc, roomId, 'join');
      const aRoom = await waitForRoom(ac, roomId, 'join');

      const m1 = await sendText(bc, roomId, 'first');
      const m2 = await sendText(bc, roomId, 'second');
      const m1a = await waitUntil(ac, 'alice sees "first"', () => eventWithBody(aRoom, 'first'));
      await waitUntil(ac, 'alice sees "second"', () => eventWithBody(aRoom, 'second'));

      // A read receipt on the older message: bob sees it on exactly that event.
      await ac.sendReadReceipt(m1a, sdk.ReceiptType.Read);
      await waitUntil(bc, 'alice’s receipt on "first"', () => bRoom.getEventReadUpTo(alice.userId) === m1);
      const m1b = bRoom.findEventById(m1);
      assert.ok(m1b);
      assert.ok(bRoom.getUsersReadUpTo(m1b).includes(alice.userId));
      const receipt = bRoom.getReceiptsForEvent(m1b).find((r) => r.userId === alice.userId);
      assert.equal(receipt?.type, sdk.ReceiptType.Read);
      assert.equal(typeof receipt?.data.ts, 'number');
      const m2b = bRoom.findEventById(m2);
      assert.ok(m2b);
      assert.ok(!bRoom.getUsersReadUpTo(m2b).includes(alice.userId), 'no receipt of alice on "second" yet');

      // read_markers: the public receipt moves to "second", m.fully_read lands in alice's room account data on
      // both her devices, and stays private to her.
      const m2a = eventWithBody(aRoom, 'second');
      assert.ok(m2a);
      await ac.setRoomReadMarkers(roomId, m2, m2a);
      await waitUntil(
        bc,
        'alice’s receipt moves to "second"',
        () => bRoom.getEventReadUpTo(alice.userId) === m2,
      );
      const fullyRead = (c: sdk.MatrixClient) => () =>
        c.getRoom(roomId)?.getAccountData(sdk.EventType.FullyRead)?.getContent().event_id === m2;
      await waitUntil(ac, 'm.fully_read on alice’s device', fullyRead(ac));
      await waitUntil(ac2, 'm.fully_read on alice’s second device', fullyRead(ac2));
      assert.equal(
        bRoom.getAccountData(sdk.EventType.FullyRead),
        undefined,
        'bob does not see alice’s marker',
      );

      // The second device, started after the fact, got alice's receipt too (initial sync carries receipts).
      const ac3 = await jsClient(await secondDevice(server, alice));
      const r3 = await waitForRoom(ac3, roomId, 'join');
      assert.equal(r3.getEventReadUpTo(alice.userId), m2);
      assert.equal(r3.getAccountData(sdk.EventType.FullyRead)?.getContent().event_id, m2);
    });

    it('account data (global, room, tags) follows the user to a second device', async () => {
      const alice = await user('alice');
      const bob = await user('bob');
      const roomId = await sharedRoom(alice, [bob]);
      const a1 = await jsClient(alice);
      const a2 = await jsClient(await secondDevice(server, alice));
      const bc = await jsClient(bob);
      await waitForRoom(a1, roomId, 'join');
      const r2 = await waitForRoom(a2, roomId, 'join');

      // Global account data, then an update of it (the second device sees the old value replaced).
      await withTimeout(a1.setAccountData('org.hearth.test.settings', { n: 1 }), 10_000, 'account data echo');
      await waitUntil(
        a2,
        'global account data n=1',
        () => a2.getAccountData('org.hearth.test.settings')?.getContent().n === 1,
      );
      const update = waitForEvent(
        a2,
        sdk.ClientEvent.AccountData,
        (ev) => ev.getType() === 'org.hearth.test.settings',
      );
      await withTimeout(a1.setAccountData('org.hearth.test.settings', { n: 2 }), 10_000, 'account data echo');
      const [ev, prev] = await update;
      assert.equal(ev.getContent().n, 2);
      assert.equal(prev?.getContent().n, 1);
      assert.equal(a2.getAccountData('org.hearth.test.settings')?.getContent().n, 2);

      // Room account data.
      await a1.setRoomAccountData(roomId, 'org.hearth.test.room', { colour: 'amber' });
      await waitUntil(
        a2,
        'room account data',
        () => r2.getAccountData('org.hearth.test.room')?.getContent().colour === 'amber',
      );

      // Tags: two added, one removed.
      await a1.setRoomTag(roomId, 'm.favourite', { order: 0.25 });
      await a1.setRoomTag(roomId, 'u.work', {});
      await waitUntil(a2, 'both tags', () => r2.tags['m.favourite']?.order === 0.25 && 'u.work' in r2.tags);
      const tagsChanged = waitForEvent(a2, sdk.RoomEvent.Tags, (_ev, room) => room.roomId === roomId);
      await a1.deleteRoomTag(roomId, 'm.favourite');
      await tagsChanged;
      await waitUntil(a2, 'm.favourite removed', () => !('m.favourite' in r2.tags) && 'u.work' in r2.tags);
      assert.deepEqual(Object.keys(r2.tags), ['u.work']);

      // None of it leaks to bob.
      await syncBarrier(bc);
      const bRoom = bc.getRoom(roomId);
      assert.ok(bRoom);
      assert.equal(bRoom.getAccountData('org.hearth.test.room'), undefined);
      assert.deepEqual(bRoom.tags, {});
      assert.equal(bc.getAccountData('org.hearth.test.settings'), undefined);
    });

    it('presence of a user sharing a room', async () => {
      const alice = await user('alice');
      const bob = await user('bob');
      const dave = await user('dave'); // shares no room with bob
      await sharedRoom(alice, [bob]);
      const bc = await jsClient(bob);
      const ac = createJsClient(alice); // HTTP only: no sync loop that could mark alice online on its own
      const dc = createJsClient(dave);

      const changed = waitForEvent(
        bc,
        sdk.UserEvent.Presence,
        (_ev, u) => u.userId === alice.userId && u.presence === 'unavailable',
      );
      await ac.setPresence({ presence: sdk.SetPresence.Unavailable, status_msg: 'brb' });
      await dc.setPresence({ presence: sdk.SetPresence.Online, status_msg: 'dave here' });
      await changed;
      assert.equal(bc.getUser(alice.userId)?.presenceStatusMsg, 'brb');

      await ac.setPresence({ presence: sdk.SetPresence.Online, status_msg: 'back' });
      await waitUntil(bc, 'alice back online', () => {
        const u = bc.getUser(alice.userId);
        return u?.presence === 'online' && u.presenceStatusMsg === 'back';
      });
      assert.equal(bc.getUser(dave.userId)?.presence ?? 'offline', 'offline', 'bob shares no room with dave');

      // A client started now gets the current presence in its initial sync.
      const bc2 = await jsClient(await secondDevice(server, bob));
      await waitUntil(bc2, 'alice online in the initial sync', () => {
        const u = bc2.getUser(alice.userId);
        return u?.presence === 'online' && u.presenceStatusMsg === 'back';
      });
    });

    it('gappy sync after a restart from the saved sync token is filled through /messages', async () => {
      const alice = await user('alice');
      const bob = await user('bob');
      const roomId = await sharedRoom(alice, [bob]);
      const store = new ResumableMemoryStore();
      const bc = createJsClient(bob, store);
      await startJsClient(bc);
      const room = await waitForRoom(bc, roomId, 'join');
      const ac = createJsClient(alice);
      const before = ['before 0', 'before 1', 'before 2'];
      for (const b of before) await sendText(ac, roomId, b);
      await waitUntil(bc, 'bob sees "before 2"', () => eventWithBody(room, 'before 2'));
      const token = store.getSyncToken();
      assert.ok(token);

      stopJsClient(bc);
      const gap = Array.from({ length: 25 }, (_, i) => `gap ${i}`);
      for (const b of gap) await sendText(ac, roomId, b);

      const resumed = waitForEvent(
        bc,
        sdk.ClientEvent.Sync,
        (state, _prev, data) => state === sdk.SyncState.Prepared && data?.oldSyncToken === token,
        20_000,
        'the restarted client to sync from its saved token',
      );
      await startJsClient(bc);
      await resumed;
      assert.equal(bc.getRoom(roomId), room, 'the same room model, updated incrementally');
      await waitUntil(bc, 'bob sees "gap 24"', () => eventWithBody(room, 'gap 24'));
      const live = messageBodies(room.getLiveTimeline().getEvents());
      assert.ok(
        !live.includes('gap 0'),
        `the incremental sync was limited (live timeline: ${live.join(', ')})`,
      );
      assert.equal(live[live.length - 1], 'gap 24');

      for (let i = 0; i < 5 && !messageBodies(linkedTimelineEvents(room)).includes('gap 0'); i++) {
        await withTimeout(bc.scrollback(room, 30), 10_000, 'scrollback');
      }
      assert.deepEqual(messageBodies(linkedTimelineEvents(room)), [...before, ...gap]);
      const ids = linkedTimelineEvents(room).map((e) => e.getId());
      assert.equal(new Set(ids).size, ids.length, 'no event twice');
    });

    for (const lazyLoadMembers of [false, true]) {
      it(`a fresh client's limited initial sync is filled by scrollback, and /context jumps (lazyLoadMembers=${lazyLoadMembers})`, async () => {
        const alice = await user('alice');
        const bob = await user('bob');
        const roomId = await sharedRoom(alice, [bob]);
        const ac = createJsClient(alice);
        const bodies = Array.from({ length: 28 }, (_, i) => `msg ${i}`);
        const ids: string[] = [];
        for (const b of bodies) ids.push(await sendText(ac, roomId, b));

        const bc = await jsClient(bob, { lazyLoadMembers, initialSyncLimit: 20 });
        const room = await waitForRoom(bc, roomId, 'join');
        const live = messageBodies(room.getLiveTimeline().getEvents());
        assert.deepEqual(live, bodies.slice(-live.length), 'the initial timeline is the newest messages');
        assert.ok(live.length <= 20 && !live.includes('msg 0'));

        for (let i = 0; i < 5 && !messageBodies(linkedTimelineEvents(room)).includes('msg 0'); i++) {
          await withTimeout(bc.scrollback(room, 30), 10_000, 'scrollback');
        }
        assert.deepEqual(messageBodies(linkedTimelineEvents(room)), bodies);
        const senders = new Set(
          linkedTimelineEvents(room)
            .filter((e) => e.getType() === sdk.EventType.RoomMessage)
            .map((e) => e.getSender()),
        );
        assert.deepEqual([...senders], [alice.userId]);
        assert.equal(room.getMember(alice.userId)?.membership, 'join');

        // Jump to an event through a fresh client's /context.
        const bc2 = await jsClient(await secondDevice(server, bob), { lazyLoadMembers, initialSyncLimit: 5 });
        const room2 = await waitForRoom(bc2, roomId, 'join');
        const target = ids[3] as string;
        assert.equal(room2.findEventById(target), undefined);
        const tl = await withTimeout(
          bc2.getEventTimeline(room2.getUnfilteredTimelineSet(), target),
          10_000,
          '/context',
        );
        assert.ok(tl);
        const around = messageBodies(tl.getEvents());
        const at = around.indexOf('msg 3');
        assert.ok(at >= 0, `msg 3 in the /context timeline (${around.join(', ')})`);
        assert.deepEqual(around, bodies.slice(3 - at, 3 - at + around.length), 'contiguous, in order');
        assert.equal(
          tl
            .getEvents()
            .find((e) => e.getId() === target)
            ?.getSender(),
          alice.userId,
        );
      });
    }
  });
}
