/** /sync filters over real HTTP: stored and inline filters, room/timeline/state/ephemeral/account-data filters. */
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
  joinedRoom,
  leftRoom,
  mustJoin,
  post,
  putState,
  send,
  stateKeys,
  sync,
  syncRaw,
  syncSince,
  text,
  types,
  type User,
} from './sync-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: /sync filters`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    /** A room with a mix of event types and senders, for timeline filters. */
    let mixed: string;
    let other: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('f_alice');
      bob = await server.user('f_bob');
      mixed = await createRoom(alice, { preset: 'public_chat', name: 'Mixed' });
      other = await createRoom(alice, { preset: 'public_chat', name: 'Other' });
      await join(bob, mixed);
      await text(alice, mixed, 'a1');
      await send(bob, mixed, { msgtype: 'm.image', body: 'pic', url: 'mxc://test.local/abc' });
      await send(bob, mixed, { n: 1 }, 'org.example.foo');
      await send(alice, mixed, { n: 2 }, 'org.example.bar');
      await text(bob, mixed, 'b2');
      await text(alice, other, 'other1');
    });
    after(() => server.close());

    const wide = { limit: 50 };
    const timelineWith = async (f: Json): Promise<Json[]> => {
      const body = await sync(alice, { filter: { room: { rooms: [mixed], timeline: { ...wide, ...f } } } });
      return mustJoin(body, mixed).timeline.events;
    };

    it('applies a stored filter by id and the same filter inline', async () => {
      const def = { room: { timeline: { limit: 2 } } };
      const created = await post(alice, `/_matrix/client/v3/user/${enc(alice.userId)}/filter`, def);
      const id = created.filter_id as string;
      assert.equal(typeof id, 'string');
      for (const filter of [id, def]) {
        const body = await sync(alice, { filter });
        assertSyncShape(body);
        const room = mustJoin(body, mixed);
        assert.equal(room.timeline.events.length, 2);
        assert.equal(room.timeline.limited, true);
        assert.deepEqual(bodies(room.timeline.events), ['b2']);
        // With the default limit (10) the whole short room fits: the filter really was applied.
      }
      const unfiltered = await sync(alice);
      assert.ok(mustJoin(unfiltered, mixed).timeline.events.length > 2);
    });

    it('rejects an unknown filter id, another user’s filter id and malformed filters with 400', async () => {
      const unknown = await syncRaw(alice, { filter: '987654' });
      assert.equal(unknown.status, 400, JSON.stringify(unknown.body));
      assert.equal(unknown.body.errcode, 'M_INVALID_PARAM');
      const bobs = await post(bob, `/_matrix/client/v3/user/${enc(bob.userId)}/filter`, {});
      const stranger = await server.user('f_nofilters');
      const foreign = await syncRaw(stranger, { filter: bobs.filter_id as string });
      assert.equal(foreign.status, 400);
      const badJson = await syncRaw(alice, { filter: '{not json' });
      assert.equal(badJson.status, 400);
      const badField = await syncRaw(alice, { filter: { room: { timeline: { limit: 'x' } } } });
      assert.equal(badField.status, 400);
    });

    it('room.rooms and room.not_rooms select rooms', async () => {
      const only = await sync(alice, { filter: { room: { rooms: [other] } } });
      assert.deepEqual(Object.keys((only.rooms as Json).join as Json), [other]);
      const not = await sync(alice, { filter: { room: { not_rooms: [other] } } });
      const joinedIds = Object.keys((not.rooms as Json).join as Json);
      assert.ok(joinedIds.includes(mixed));
      assert.ok(!joinedIds.includes(other));
    });

    it('timeline limit, types (with * wildcards), not_types, senders, not_senders and contains_url', async () => {
      const limited = await sync(alice, { filter: { room: { rooms: [mixed], timeline: { limit: 1 } } } });
      const lt = mustJoin(limited, mixed).timeline;
      assert.equal(lt.limited, true);
      assert.deepEqual(bodies(lt.events), ['b2']);
      assert.equal(lt.events.length, 1);

      assert.deepEqual(types(await timelineWith({ types: ['org.example.foo'] })), ['org.example.foo']);
      assert.deepEqual(types(await timelineWith({ types: ['org.example.*'] })), [
        'org.example.foo',
        'org.example.bar',
      ]);
      const noRoomTypes = await timelineWith({ not_types: ['m.room.*'] });
      assert.deepEqual(types(noRoomTypes), ['org.example.foo', 'org.example.bar']);
      const notFoo = await timelineWith({ types: ['org.example.*'], not_types: ['org.example.foo'] });
      assert.deepEqual(types(notFoo), ['org.example.bar']);
      const all = await timelineWith({ types: ['*'] });
      assert.ok(all.some((e) => e.type === 'm.room.create'));
      assert.ok(all.some((e) => e.type === 'org.example.bar'));
      assert.deepEqual(await timelineWith({ types: [] }), []);

      const fromBob = await timelineWith({ senders: [bob.userId] });
      assert.ok(fromBob.length >= 4);
      assert.ok(fromBob.every((e) => e.sender === bob.userId));
      const notAlice = await timelineWith({ not_senders: [alice.userId] });
      assert.deepEqual(
        notAlice.map((e) => e.sender),
        fromBob.map((e) => e.sender),
      );
      const bobMessages = await timelineWith({ senders: [bob.userId], types: ['m.room.message'] });
      assert.deepEqual(bodies(bobMessages), ['pic', 'b2']);

      const withUrl = await timelineWith({ contains_url: true });
      assert.deepEqual(bodies(withUrl), ['pic']);
      assert.equal(withUrl.length, 1);
      const withoutUrl = await timelineWith({ contains_url: false, types: ['m.room.message'] });
      assert.deepEqual(bodies(withoutUrl), ['a1', 'b2']);
    });

    it('a filtered timeline that hides a state change still delivers it in state on an incremental sync', async () => {
      const f = { room: { rooms: [mixed], timeline: { limit: 10, types: ['m.room.message'] } } };
      const first = await sync(alice, { filter: f });
      await putState(alice, mixed, 'm.room.topic', { topic: 'hidden from the timeline' });
      await text(bob, mixed, 'after topic');
      const inc = await syncSince(alice, first, { filter: f });
      const room = mustJoin(inc, mixed);
      assert.deepEqual(bodies(room.timeline.events), ['after topic']);
      const topic = room.state?.events.find((e) => e.type === 'm.room.topic');
      assert.equal((topic?.content as Json | undefined)?.topic, 'hidden from the timeline');
    });

    it('room.state types and not_types filter the state section', async () => {
      const names = await sync(alice, {
        filter: { room: { rooms: [mixed], timeline: { limit: 1 }, state: { types: ['m.room.name'] } } },
      });
      assert.deepEqual(types(mustJoin(names, mixed).state?.events ?? []), ['m.room.name']);
      const noMembers = await sync(alice, {
        filter: { room: { rooms: [mixed], timeline: { limit: 1 }, state: { not_types: ['m.room.member'] } } },
      });
      const st = types(mustJoin(noMembers, mixed).state?.events ?? []);
      assert.ok(st.includes('m.room.create') && st.includes('m.room.name'));
      assert.ok(!st.includes('m.room.member'));
    });

    it('lazy_load_members: only the members of timeline senders and the user, include_redundant_members', async () => {
      const carol = await server.user('f_carol');
      const dave = await server.user('f_dave');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await join(carol, room);
      await join(dave, room);
      await text(carol, room, 'c1');
      await text(bob, room, 'b1');
      const lazy = { lazy_load_members: true };
      const f = (extra: Json = {}) => ({
        room: { rooms: [room], timeline: { limit: 1 }, state: { ...lazy, ...extra } },
      });

      const full = await sync(alice, { filter: { room: { rooms: [room], timeline: { limit: 1 } } } });
      assert.deepEqual(
        stateKeys(mustJoin(full, room).state?.events ?? [], 'm.room.member'),
        [alice.userId, bob.userId, carol.userId, dave.userId].sort(),
      );
      const initial = await sync(alice, { filter: f() });
      const st = mustJoin(initial, room).state?.events ?? [];
      assert.deepEqual(stateKeys(st, 'm.room.member'), [alice.userId, bob.userId].sort());
      assert.ok(
        st.some((e) => e.type === 'm.room.create'),
        'other state is still sent',
      );

      // Carol speaks again: the client never got her membership, so it comes now; Dave's still does not.
      await text(carol, room, 'c2');
      const inc = await syncSince(alice, initial, { filter: f() });
      const incRoom = mustJoin(inc, room);
      assert.deepEqual(bodies(incRoom.timeline.events), ['c2']);
      assert.deepEqual(stateKeys(incRoom.state?.events ?? [], 'm.room.member'), [carol.userId]);

      await text(bob, room, 'b2');
      const redundant = await syncSince(alice, inc, { filter: f({ include_redundant_members: true }) });
      // include_redundant_members: unchanged memberships are sent again, the user's own included.
      const rs = stateKeys(mustJoin(redundant, room).state?.events ?? [], 'm.room.member');
      assert.deepEqual(rs, [alice.userId, bob.userId].sort());

      // A membership change inside the timeline is not repeated in state; state holds the one before it.
      await post(dave, `/_matrix/client/v3/rooms/${enc(room)}/leave`);
      const left = await syncSince(alice, redundant, { filter: f() });
      const leftRoomData = mustJoin(left, room);
      const leave = leftRoomData.timeline.events[0];
      assert.equal((leave?.content as Json).membership, 'leave');
      const daveState = (leftRoomData.state?.events ?? []).filter((e) => e.type === 'm.room.member');
      assert.deepEqual(
        daveState.map((e) => [e.state_key, (e.content as Json).membership]),
        [[dave.userId, 'join']],
      );
      assert.notEqual(daveState[0]?.event_id, leave?.event_id);
    });

    it('room.ephemeral types select typing and receipts', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      const ev = await text(bob, room, 'read me');
      await post(bob, `/_matrix/client/v3/rooms/${enc(room)}/receipt/m.read/${enc(ev)}`);
      const typing = await bob.put(`/_matrix/client/v3/rooms/${enc(room)}/typing/${enc(bob.userId)}`, {
        typing: true,
        timeout: 30000,
      });
      assert.equal(typing.status, 200);
      const ephemeralWith = async (f: Json): Promise<string[]> =>
        types(
          mustJoin(await sync(alice, { filter: { room: { rooms: [room], ephemeral: f } } }), room).ephemeral
            ?.events ?? [],
        ).sort();
      assert.deepEqual(await ephemeralWith({}), ['m.receipt', 'm.typing']);
      assert.deepEqual(await ephemeralWith({ types: ['m.receipt'] }), ['m.receipt']);
      assert.deepEqual(await ephemeralWith({ not_types: ['m.receipt'] }), ['m.typing']);
      assert.deepEqual(await ephemeralWith({ types: [] }), []);
      await bob.put(`/_matrix/client/v3/rooms/${enc(room)}/typing/${enc(bob.userId)}`, { typing: false });
    });

    it('room.account_data and top-level account_data filters', async () => {
      const base = `/_matrix/client/v3/user/${enc(alice.userId)}`;
      for (const t of ['org.example.a', 'org.example.b']) {
        assert.equal((await alice.put(`${base}/rooms/${enc(other)}/account_data/${t}`, { t })).status, 200);
        assert.equal((await alice.put(`${base}/account_data/${t}.global`, { t })).status, 200);
      }
      const roomData = async (f: Json): Promise<string[]> =>
        types(
          mustJoin(await sync(alice, { filter: { room: { rooms: [other], account_data: f } } }), other)
            .account_data?.events ?? [],
        ).sort();
      assert.deepEqual(await roomData({}), ['org.example.a', 'org.example.b']);
      assert.deepEqual(await roomData({ types: ['org.example.a'] }), ['org.example.a']);
      assert.deepEqual(await roomData({ not_types: ['org.example.*'] }), []);

      const globalData = async (f: Json): Promise<string[]> =>
        types(
          ((await sync(alice, { filter: { account_data: f } })).account_data as Json).events as Json[],
        ).sort();
      const all = await globalData({});
      assert.ok(all.includes('m.push_rules') && all.includes('org.example.a.global'));
      assert.deepEqual(await globalData({ types: ['org.example.b.*'] }), ['org.example.b.global']);
      const noPush = await globalData({ not_types: ['m.push_rules'] });
      assert.ok(!noPush.includes('m.push_rules'));
      assert.ok(noPush.includes('org.example.a.global'));
    });

    it('include_leave adds left rooms to an initial sync', async () => {
      const eve = await server.user('f_eve');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(eve, room);
      await text(eve, room, 'bye soon');
      await post(eve, `/_matrix/client/v3/rooms/${enc(room)}/leave`);
      const without = await sync(eve);
      assert.equal(leftRoom(without, room), undefined);
      assert.equal(joinedRoom(without, room), undefined);
      const withLeave = await sync(eve, { filter: { room: { include_leave: true } } });
      assertSyncShape(withLeave);
      const left = leftRoom(withLeave, room);
      assert.ok(left, 'left room listed with include_leave');
      const last = left.timeline.events.at(-1);
      assert.equal(last?.type, 'm.room.member');
      assert.equal((last?.content as Json).membership, 'leave');
      assert.ok(bodies(left.timeline.events).includes('bye soon'));
    });

    it('top-level presence filter', async () => {
      const pres = await server.user('f_pres');
      await pres.put(`/_matrix/client/v3/presence/${enc(pres.userId)}/status`, { presence: 'online' });
      const withPresence = await sync(pres);
      const evs = (withPresence.presence as Json).events as Json[];
      assert.ok(evs.some((e) => e.sender === pres.userId && e.type === 'm.presence'));
      for (const filter of [{ presence: { types: [] } }, { presence: { not_types: ['m.presence'] } }]) {
        const body = await sync(pres, { filter });
        assert.deepEqual((body.presence as Json).events, []);
      }
      const bySender = await sync(pres, { filter: { presence: { not_senders: [pres.userId] } } });
      assert.ok(!((bySender.presence as Json).events as Json[]).some((e) => e.sender === pres.userId));
    });

    it('event_fields keeps only the listed dotted fields', async () => {
      await text(bob, mixed, 'fields');
      const body = await sync(alice, {
        filter: {
          event_fields: ['type', 'content.body', 'sender'],
          room: { rooms: [mixed], timeline: { limit: 3 }, state: { types: ['m.room.name'] } },
        },
      });
      const room = mustJoin(body, mixed);
      const msg = room.timeline.events.at(-1);
      assert.deepEqual(msg, { type: 'm.room.message', content: { body: 'fields' }, sender: bob.userId });
      for (const e of room.timeline.events) {
        assert.deepEqual(
          Object.keys(e)
            .sort()
            .filter((k) => !['type', 'content', 'sender'].includes(k)),
          [],
        );
        assert.equal(e.event_id, undefined);
      }
      assert.deepEqual(room.state?.events, [{ type: 'm.room.name', sender: alice.userId }]);
    });

    it('event_format=federation returns PDUs with auth_events, prev_events, hashes and signatures', async () => {
      const body = await sync(alice, {
        filter: { event_format: 'federation', room: { rooms: [mixed], timeline: { limit: 2 } } },
      });
      const room = mustJoin(body, mixed);
      assert.equal(room.timeline.events.length, 2);
      for (const e of [...room.timeline.events, ...(room.state?.events ?? [])]) {
        assert.ok(Array.isArray(e.auth_events), `auth_events on ${String(e.type)}`);
        assert.ok(Array.isArray(e.prev_events), 'prev_events');
        assert.equal(typeof (e.hashes as Json).sha256, 'string', 'hashes');
        assert.ok(
          ((e.signatures as Json)[server.serverName] as Json | undefined) !== undefined,
          'signatures',
        );
        assert.equal(typeof e.depth, 'number');
      }
      const client = mustJoin(
        await sync(alice, { filter: { room: { rooms: [mixed], timeline: { limit: 2 } } } }),
        mixed,
      );
      assert.equal(client.timeline.events[0]?.hashes, undefined);
      assert.equal(client.timeline.events[0]?.signatures, undefined);
    });

    it('timeline.limit 0: no timeline events, limited with a prev_batch to paginate from, state as filtered', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await text(alice, room, 'z1');
      await text(bob, room, 'z2');
      const filter = { room: { rooms: [room], state: { types: ['m.room.member'] }, timeline: { limit: 0 } } };
      const stored = await post(alice, `/_matrix/client/v3/user/${enc(alice.userId)}/filter`, filter);
      const newest = async (prevBatch: string | undefined): Promise<string[]> => {
        assert.equal(typeof prevBatch, 'string');
        const res = await alice.get(
          `/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=1&from=${enc(prevBatch ?? '')}`,
        );
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return bodies(res.body.chunk as Json[]);
      };

      for (const f of [filter, stored.filter_id as string]) {
        const initial = await sync(alice, { filter: f });
        const r = mustJoin(initial, room);
        assert.deepEqual(r.timeline.events, []);
        assert.equal(r.timeline.limited, true);
        assert.deepEqual(types(r.state?.events ?? []), ['m.room.member', 'm.room.member']);
        assert.deepEqual(
          stateKeys(r.state?.events ?? [], 'm.room.member').sort(),
          [alice.userId, bob.userId].sort(),
        );
        assert.deepEqual(await newest(r.timeline.prev_batch), ['z2']);
      }

      // Incrementally, a new message makes the room appear (limited, still no events) instead of an empty sync.
      const since = await sync(alice, { filter });
      await text(bob, room, 'z3');
      const next = await syncSince(alice, since, { filter });
      const r = mustJoin(next, room);
      assert.deepEqual(r.timeline.events, []);
      assert.equal(r.timeline.limited, true);
      assert.deepEqual(await newest(r.timeline.prev_batch), ['z3']);
      // Nothing new: the room is left out.
      const quiet = await syncSince(alice, next, { filter });
      assert.equal(joinedRoom(quiet, room), undefined);

      const negative = await syncRaw(alice, { filter: { room: { timeline: { limit: -1 } } } });
      assert.equal(negative.status, 400);
      assert.equal(negative.body.errcode, 'M_BAD_JSON');
    });
  });
}
