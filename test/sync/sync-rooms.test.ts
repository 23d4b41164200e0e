/**
 * /sync room sections over real HTTP: rooms joined, left, kicked from, banned from, knocked on, invited to and
 * rejected, forgotten; full_state; summaries; unread counts; transaction ids.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { Client, startTestServer, type Json, type TestServer } from '../helpers/server.js';
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
  roomsOf,
  send,
  stateKeys,
  sync,
  syncSince,
  text,
  types,
  type User,
} from './sync-util.js';

const rooms = '/_matrix/client/v3/rooms';

for (const engine of ENGINES) {
  describe(`${engine}: /sync room sections`, () => {
    let server: TestServer;
    let alice: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('r_alice');
    });
    after(() => server.close());

    it('full_state=true on an incremental sync returns the full state of every room', async () => {
      const room = await createRoom(alice, { preset: 'public_chat', name: 'Full', topic: 'everything' });
      const first = await sync(alice);
      const quiet = await syncSince(alice, first);
      assert.equal(joinedRoom(quiet, room), undefined, 'nothing changed');
      const full = await syncSince(alice, first, { full_state: true });
      assertSyncShape(full);
      const r = mustJoin(full, room);
      const st = types(r.state?.events ?? []);
      for (const t of [
        'm.room.create',
        'm.room.name',
        'm.room.topic',
        'm.room.power_levels',
        'm.room.member',
      ])
        assert.ok(st.includes(t), `${t} in full state: ${st.join(',')}`);
      assert.deepEqual(r.timeline.events, [], 'no new events since the token');
      assert.equal((r.summary as Json)['m.joined_member_count'], 1);
    });

    it('a room joined since the last sync comes with its full state', async () => {
      const bob = await server.user('r_bob');
      const room = await createRoom(alice, { preset: 'public_chat', name: 'Joined later', topic: 'tt' });
      await text(alice, room, 'before bob');
      const first = await sync(bob);
      assert.equal(joinedRoom(first, room), undefined);
      await join(bob, room);
      const inc = await syncSince(bob, first);
      assertSyncShape(inc);
      const r = mustJoin(inc, room);
      const last = r.timeline.events.at(-1);
      assert.equal(last?.type, 'm.room.member');
      assert.equal(last?.state_key, bob.userId);
      const all = [...(r.state?.events ?? []), ...r.timeline.events];
      const st = types(all);
      for (const t of [
        'm.room.create',
        'm.room.name',
        'm.room.topic',
        'm.room.power_levels',
        'm.room.join_rules',
      ])
        assert.ok(st.includes(t), `${t} delivered: ${st.join(',')}`);
      assert.ok(stateKeys(all, 'm.room.member').includes(alice.userId));
      assert.equal((r.summary as Json)['m.joined_member_count'], 2);
    });

    it('a left room appears in leave with its timeline up to the leave event and not after', async () => {
      const carol = await server.user('r_carol');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(carol, room);
      const first = await sync(carol);
      await text(alice, room, 'while carol is here');
      await post(carol, `${rooms}/${enc(room)}/leave`);
      await text(alice, room, 'after carol left');
      await putState(alice, room, 'm.room.topic', { topic: 'after carol left' });
      const inc = await syncSince(carol, first);
      assertSyncShape(inc);
      assert.equal(joinedRoom(inc, room), undefined);
      const left = leftRoom(inc, room);
      assert.ok(left, 'room in rooms.leave');
      assert.deepEqual(bodies(left.timeline.events), ['while carol is here']);
      const last = left.timeline.events.at(-1);
      assert.equal(last?.type, 'm.room.member');
      assert.equal((last?.content as Json).membership, 'leave');
      assert.ok(!(left.state?.events ?? []).some((e) => e.type === 'm.room.topic'));
      // And it is reported once: the next sync does not repeat it, nor show what happened after.
      await text(alice, room, 'later still');
      const next = await syncSince(carol, inc);
      assert.equal(leftRoom(next, room), undefined);
      assert.equal(joinedRoom(next, room), undefined);
    });

    it('kicked and banned users see the leave, with the kick or ban event', async () => {
      const dan = await server.user('r_dan');
      const erin = await server.user('r_erin');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(dan, room);
      await join(erin, room);
      const d0 = await sync(dan);
      const e0 = await sync(erin);
      await post(alice, `${rooms}/${enc(room)}/kick`, { user_id: dan.userId, reason: 'out' });
      await post(alice, `${rooms}/${enc(room)}/ban`, { user_id: erin.userId, reason: 'gone' });
      await text(alice, room, 'after both');

      const d1 = await syncSince(dan, d0);
      const kick = leftRoom(d1, room)?.timeline.events.at(-1);
      assert.equal(kick?.sender, alice.userId);
      assert.equal(kick?.state_key, dan.userId);
      assert.deepEqual(kick?.content, { membership: 'leave', reason: 'out' });
      assert.ok(!bodies(leftRoom(d1, room)?.timeline.events ?? []).includes('after both'));

      const e1 = await syncSince(erin, e0);
      const ban = leftRoom(e1, room)?.timeline.events.at(-1);
      assert.equal(ban?.sender, alice.userId);
      assert.equal((ban?.content as Json).membership, 'ban');
      assert.ok(!bodies(leftRoom(e1, room)?.timeline.events ?? []).includes('after both'));
      // Both rooms are also listed by an initial sync that includes left rooms.
      const again = await sync(erin, { filter: { room: { include_leave: true } } });
      assert.ok(leftRoom(again, room));
    });

    it('a knock appears in knock with knock_state', async () => {
      const fay = await server.user('r_fay');
      const room = await createRoom(alice, { name: 'Knock here', room_version: '12' });
      await putState(alice, room, 'm.room.join_rules', { join_rule: 'knock' });
      const f0 = await sync(fay);
      const knocked = await fay.post(`/_matrix/client/v3/knock/${enc(room)}`, { reason: 'let me in' });
      assert.equal(knocked.status, 200, JSON.stringify(knocked.body));
      const f1 = await syncSince(fay, f0);
      assertSyncShape(f1);
      const k = roomsOf(f1, 'knock')[room] as { knock_state: { events: Json[] } } | undefined;
      assert.ok(k, 'room in rooms.knock');
      const ks = k.knock_state.events;
      const rules = ks.find((e) => e.type === 'm.room.join_rules');
      assert.equal((rules?.content as Json | undefined)?.join_rule, 'knock');
      assert.equal(
        (ks.find((e) => e.type === 'm.room.name')?.content as Json | undefined)?.name,
        'Knock here',
      );
      const own = ks.find((e) => e.type === 'm.room.member' && e.state_key === fay.userId);
      assert.equal((own?.content as Json | undefined)?.membership, 'knock');
      assert.equal(joinedRoom(f1, room), undefined);
      // The room's members see the knock in their timeline.
      const a = await sync(alice, { filter: { room: { rooms: [room] } } });
      assert.ok(mustJoin(a, room).timeline.events.some((e) => e.state_key === fay.userId));
    });

    it('an invite appears in invite, and once rejected in leave', async () => {
      const gus = await server.user('r_gus');
      const g0 = await sync(gus);
      const room = await createRoom(alice, { name: 'Invite me', invite: [gus.userId] });
      const g1 = await syncSince(gus, g0);
      assertSyncShape(g1);
      const inv = roomsOf(g1, 'invite')[room] as { invite_state: { events: Json[] } } | undefined;
      assert.ok(inv);
      const own = inv.invite_state.events.find(
        (e) => e.type === 'm.room.member' && e.state_key === gus.userId,
      );
      assert.equal((own?.content as Json | undefined)?.membership, 'invite');
      assert.equal(own?.sender, alice.userId);
      await post(gus, `${rooms}/${enc(room)}/leave`);
      const g2 = await syncSince(gus, g1);
      assertSyncShape(g2);
      assert.equal(roomsOf(g2, 'invite')[room], undefined);
      const left = leftRoom(g2, room);
      assert.ok(left, 'rejected invite in rooms.leave');
      const last = left.timeline.events.at(-1);
      assert.equal(last?.state_key, gus.userId);
      assert.equal((last?.content as Json).membership, 'leave');
    });

    it('forgotten rooms never appear', async () => {
      const hal = await server.user('r_hal');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(hal, room);
      const h0 = await sync(hal);
      await text(alice, room, 'x');
      await post(hal, `${rooms}/${enc(room)}/leave`);
      await post(hal, `${rooms}/${enc(room)}/forget`);
      for (const body of [
        await syncSince(hal, h0),
        await sync(hal, { filter: { room: { include_leave: true } } }),
        await syncSince(hal, h0, { full_state: true, filter: { room: { include_leave: true } } }),
      ]) {
        assertSyncShape(body);
        for (const kind of ['join', 'leave', 'invite', 'knock'] as const)
          assert.equal(roomsOf(body, kind)[room], undefined, `not in rooms.${kind}`);
      }
    });

    it('summary: heroes and joined/invited counts', async () => {
      const ivy = await server.user('r_ivy');
      const jon = await server.user('r_jon');
      const room = await createRoom(alice, { preset: 'public_chat', invite: [jon.userId] });
      await join(ivy, room);
      const i0 = await sync(ivy);
      const summary = mustJoin(i0, room).summary as Json;
      assert.equal(summary['m.joined_member_count'], 2);
      assert.equal(summary['m.invited_member_count'], 1);
      assert.deepEqual([...(summary['m.heroes'] as string[])].sort(), [alice.userId, jon.userId].sort());
      // A membership change updates the counts in the next incremental sync.
      await join(jon, room);
      const i1 = await syncSince(ivy, i0);
      const s1 = mustJoin(i1, room).summary as Json;
      assert.equal(s1['m.joined_member_count'], 3);
      assert.equal(s1['m.invited_member_count'], 0);
    });

    it('unread_notifications counts messages from others after the read receipt; highlights on mentions', async () => {
      const kim = await server.user('r_kim');
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(kim, room);
      const unread = async (): Promise<{ notification_count: number; highlight_count: number } | undefined> =>
        mustJoin(await sync(kim, { filter: { room: { rooms: [room] } } }), room).unread_notifications;
      assert.deepEqual(await unread(), { notification_count: 0, highlight_count: 0 });
      await text(alice, room, 'one');
      const two = await text(alice, room, 'two');
      await text(kim, room, 'my own does not count');
      await send(alice, room, {
        msgtype: 'm.text',
        body: 'hey kim',
        'm.mentions': { user_ids: [kim.userId] },
      });
      assert.deepEqual(await unread(), { notification_count: 3, highlight_count: 1 });
      const k0 = await sync(kim, { filter: { room: { rooms: [room] } } });
      await post(kim, `${rooms}/${enc(room)}/receipt/m.read/${enc(two)}`);
      // The receipt changes the counts in an incremental sync too.
      const k1 = await syncSince(kim, k0, { filter: { room: { rooms: [room] } } });
      assert.deepEqual(mustJoin(k1, room).unread_notifications, {
        notification_count: 1,
        highlight_count: 1,
      });
      const last = await text(alice, room, 'three');
      assert.deepEqual(await unread(), { notification_count: 2, highlight_count: 1 });
      await post(kim, `${rooms}/${enc(room)}/receipt/m.read/${enc(last)}`);
      assert.deepEqual(await unread(), { notification_count: 0, highlight_count: 0 });
    });

    it('transaction_id is given only to the device that sent the event', async () => {
      const login = await new Client(server.url).post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'r_alice' },
        password: 'correct horse battery staple',
      });
      assert.equal(login.status, 200);
      const phone = new Client(server.url, login.body.access_token as string);
      const room = await createRoom(alice, {});
      const res = await alice.put(`${rooms}/${enc(room)}/send/m.room.message/laptop-txn-1`, {
        msgtype: 'm.text',
        body: 'from the laptop',
      });
      assert.equal(res.status, 200);
      const find = (body: Json): Json | undefined =>
        mustJoin(body, room).timeline.events.find((e) => e.event_id === res.body.event_id);
      const f = { filter: { room: { rooms: [room] } } };
      const onLaptop = find(await sync(alice, f));
      assert.equal((onLaptop?.unsigned as Json | undefined)?.transaction_id, 'laptop-txn-1');
      const onPhone = find(await sync(phone, f));
      assert.ok(onPhone, 'the other device sees the event');
      assert.equal((onPhone.unsigned as Json | undefined)?.transaction_id, undefined);
    });
  });
}
