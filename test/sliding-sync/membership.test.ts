/**
 * Sliding sync over HTTP on both engines: invites (stripped state), leaves and kicks, room subscriptions, list
 * filters (is_dm, is_encrypted, is_invite, room_types, not_room_types, spaces, tags, not_tags) and the v4 endpoint's
 * request and response shape.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createRoom, enc, join, post, putState, text, type User } from '../sync/sync-util.js';
import { bodiesOf, listBody, ss, stateKeysOf, V4_PATH, type SsResponse } from './ss-util.js';

for (const engine of ENGINES) {
  describe(`${engine}: sliding sync memberships, subscriptions and filters`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let plain: string;
    let encrypted: string;
    let dm: string;
    let space: string;
    let tagged: string;
    let invite: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('m_alice');
      bob = await server.user('m_bob');
      plain = await createRoom(alice, { preset: 'public_chat', name: 'Plain' });
      encrypted = await createRoom(alice, {
        preset: 'public_chat',
        initial_state: [
          { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
        ],
      });
      dm = await createRoom(alice, { preset: 'public_chat', is_direct: true });
      space = await createRoom(alice, { preset: 'public_chat', creation_content: { type: 'm.space' } });
      tagged = await createRoom(alice, { preset: 'public_chat' });
      for (const r of [plain, encrypted, dm, space, tagged]) await join(bob, r);
      await putState(alice, space, 'm.space.child', { via: [server.serverName] }, plain);
      await bob.put(`/_matrix/client/v3/user/${enc(bob.userId)}/account_data/m.direct`, {
        [alice.userId]: [dm],
      });
      await bob.put(`/_matrix/client/v3/user/${enc(bob.userId)}/rooms/${enc(tagged)}/tags/m.favourite`, {});
      invite = await createRoom(alice, { name: 'Secret invite', invite: [bob.userId] });
    });
    after(() => server.close());

    const ids = (r: SsResponse): string[] => Object.keys(r.rooms).sort();
    const withFilter = (filters: object) => ss(bob, listBody([0, 20], { filters: filters as never }));

    it('filters lists', async () => {
      assert.deepEqual(ids(await withFilter({ is_encrypted: true })), [encrypted]);
      assert.deepEqual(ids(await withFilter({ is_dm: true })), [dm]);
      assert.ok(!ids(await withFilter({ is_dm: false })).includes(dm));
      assert.deepEqual(ids(await withFilter({ is_invite: true })), [invite]);
      assert.ok(!ids(await withFilter({ is_invite: false })).includes(invite));
      assert.deepEqual(ids(await withFilter({ room_types: ['m.space'] })), [space]);
      assert.ok(!ids(await withFilter({ not_room_types: ['m.space'] })).includes(space));
      assert.ok(ids(await withFilter({ room_types: [null] })).includes(plain));
      assert.deepEqual(ids(await withFilter({ spaces: [space] })), [plain]);
      assert.deepEqual(ids(await withFilter({ tags: ['m.favourite'] })), [tagged]);
      assert.ok(!ids(await withFilter({ not_tags: ['m.favourite'] })).includes(tagged));
      const counted = await withFilter({ is_encrypted: false, is_invite: false });
      assert.equal(counted.lists.all?.count, 4);
    });

    it('sends an invite as stripped state, and the room in full once joined', async () => {
      const first = await ss(bob, listBody([0, 20], { required_state: [['m.room.name', '']] }));
      const inv = first.rooms[invite];
      assert.ok(inv?.invite_state, JSON.stringify(inv));
      assert.ok(inv.invite_state.some((e) => e.type === 'm.room.name'));
      assert.ok(inv.invite_state.some((e) => e.type === 'm.room.member' && e.state_key === bob.userId));
      assert.deepEqual(inv.timeline, [], 'no timeline events before joining');
      assert.equal(first.rooms[dm]?.is_dm, true);
      await join(bob, invite);
      const inc = await ss(bob, listBody([0, 20], { required_state: [['m.room.name', '']] }), {
        pos: first.pos,
      });
      const joined = inc.rooms[invite];
      assert.equal(joined?.initial, true);
      assert.equal(joined?.name, 'Secret invite');
      assert.deepEqual(stateKeysOf(joined?.required_state), ['m.room.name|']);
      assert.equal(joined?.invite_state, undefined);
    });

    it('sends a room the user left on this connection, and a kick even on a new connection', async () => {
      const room = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, room);
      await text(alice, room, 'hi');
      const first = await ss(bob, listBody([0, 20], { timeline_limit: 5 }));
      assert.ok(first.rooms[room]);
      await post(bob, `/_matrix/client/v3/rooms/${enc(room)}/leave`);
      await text(alice, room, 'after leave');
      const inc = await ss(bob, listBody([0, 20], { timeline_limit: 5 }), { pos: first.pos });
      const left = inc.rooms[room];
      assert.ok(left, 'the leave is sent');
      assert.deepEqual(
        left.timeline?.map((e) => [e.type, (e.content as { membership?: string }).membership]),
        [['m.room.member', 'leave']],
      );
      assert.ok(!bodiesOf(left.timeline).includes('after leave'), 'nothing after the leave');
      const fresh = await ss(bob, listBody([0, 20]));
      assert.equal(fresh.rooms[room], undefined, 'a room left by the user is not in a new connection');
      // Kicked: always listed.
      const kickRoom = await createRoom(alice, { preset: 'public_chat' });
      await join(bob, kickRoom);
      await post(alice, `/_matrix/client/v3/rooms/${enc(kickRoom)}/kick`, { user_id: bob.userId });
      const kicked = await ss(bob, listBody([0, 20], { timeline_limit: 1 }));
      const k = kicked.rooms[kickRoom];
      assert.ok(k);
      assert.equal(k.timeline?.[0]?.type, 'm.room.member');
      assert.equal((k.timeline?.[0]?.content as { membership: string }).membership, 'leave');
    });

    it('sends a knock as knock_state, and counts a mention as a highlight', async () => {
      const fay = await server.user('m_fay');
      const room = await createRoom(alice, { name: 'Knock here', room_version: '12' });
      await putState(alice, room, 'm.room.join_rules', { join_rule: 'knock' });
      const f0 = await ss(fay, listBody([0, 9]));
      const knocked = await fay.post(`/_matrix/client/v3/knock/${enc(room)}`, { reason: 'let me in' });
      assert.equal(knocked.status, 200, JSON.stringify(knocked.body));
      const f1 = await ss(fay, listBody([0, 9]), { pos: f0.pos });
      const k = f1.rooms[room];
      assert.ok(k?.knock_state, JSON.stringify(k));
      const rules = k.knock_state.find((e) => e.type === 'm.room.join_rules');
      assert.equal((rules?.content as { join_rule?: string } | undefined)?.join_rule, 'knock');
      // A mention of bob in a room he is in: one notification, one highlight.
      const b0 = await ss(bob, {
        room_subscriptions: { [plain]: { timeline_limit: 1, required_state: [] } },
      });
      await text(alice, plain, 'no mention');
      const b1 = await ss(
        bob,
        { room_subscriptions: { [plain]: { timeline_limit: 1, required_state: [] } } },
        { pos: b0.pos },
      );
      assert.equal(b1.rooms[plain]?.highlight_count, 0);
      await alice.put(`/_matrix/client/v3/rooms/${enc(plain)}/send/m.room.message/mention1`, {
        msgtype: 'm.text',
        body: `hey ${bob.userId}`,
        'm.mentions': { user_ids: [bob.userId] },
      });
      const b2 = await ss(
        bob,
        { room_subscriptions: { [plain]: { timeline_limit: 1, required_state: [] } } },
        { pos: b1.pos },
      );
      assert.equal(b2.rooms[plain]?.highlight_count, 1);
      assert.ok((b2.rooms[plain]?.notification_count ?? 0) >= 1);
    });

    it("sends a rejected or revoked invite as the user's own leave only, never the room's state", async () => {
      const body = listBody([0, 30], { timeline_limit: 5, required_state: [['*', '*']] });
      const rejected = await createRoom(alice, { name: 'Rejected', invite: [bob.userId] });
      const revoked = await createRoom(alice, { name: 'Revoked', invite: [bob.userId] });
      await text(alice, rejected, 'private chatter');
      const first = await ss(bob, body);
      assert.ok(first.rooms[rejected]?.invite_state);
      await post(bob, `/_matrix/client/v3/rooms/${enc(rejected)}/leave`);
      await post(alice, `/_matrix/client/v3/rooms/${enc(revoked)}/kick`, { user_id: bob.userId });
      const inc = await ss(bob, body, { pos: first.pos });
      for (const id of [rejected, revoked]) {
        const r = inc.rooms[id];
        assert.ok(r, id);
        assert.deepEqual(r.required_state, [], 'no room state');
        assert.equal(r.name, undefined);
        assert.deepEqual(
          r.timeline?.map((e) => [e.type, e.state_key, (e.content as { membership?: string }).membership]),
          [['m.room.member', bob.userId, 'leave']],
        );
      }
      // A revoked invite (someone else's leave) is listed on a new connection too, still without state.
      const fresh = await ss(bob, body);
      assert.deepEqual(fresh.rooms[revoked]?.required_state, []);
      assert.equal(fresh.rooms[rejected], undefined, 'a self-rejected invite is not listed afresh');
    });

    it('serves room subscriptions, and ignores rooms the user was never in', async () => {
      const stranger = await server.user('m_carol');
      const hidden = await createRoom(stranger, { preset: 'private_chat' });
      await text(stranger, hidden, 'secret');
      const r = await ss(bob, {
        room_subscriptions: {
          [plain]: { timeline_limit: 2, required_state: [['m.room.create', '']] },
          [hidden]: { timeline_limit: 2, required_state: [['*', '*']] },
        },
      });
      assert.deepEqual(Object.keys(r.rooms), [plain]);
      assert.deepEqual(stateKeysOf(r.rooms[plain]?.required_state), ['m.room.create|']);
      assert.equal(r.rooms[plain]?.timeline?.length, 2);
    });

    it('serves the v4 API: body pos and timeout, range, include/exclude, lazy members, stripped_state', async () => {
      const body = {
        lists: {
          all: {
            range: [0, 20],
            timeline_limit: 1,
            required_state: { include: [{}], exclude: [{ type: 'm.room.create' }], lazy_members: true },
          },
        },
      };
      const res = await bob.post(V4_PATH, body);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const r = res.body as unknown as SsResponse;
      const p = r.rooms[plain];
      assert.ok(p);
      assert.equal(p.membership, 'join');
      assert.deepEqual(p.lists, ['all']);
      const keys = stateKeysOf(p.required_state);
      assert.ok(keys.includes('m.room.name|') && keys.includes('m.room.power_levels|'));
      assert.ok(!keys.includes('m.room.create|'), 'excluded');
      // Lazy members: only the sender of the one timeline event, not every member.
      assert.deepEqual(
        keys.filter((k) => k.startsWith('m.room.member|')),
        [`m.room.member|${p.timeline?.[0]?.sender as string}`],
      );
      assert.equal(p.notification_count, undefined, 'v4 has no notification counts');
      const inv = await createRoom(alice, { invite: [bob.userId] });
      const next = await bob.post(V4_PATH, { ...body, pos: r.pos, timeout: 0 });
      assert.equal(next.status, 200, JSON.stringify(next.body));
      const invited = (next.body as unknown as SsResponse).rooms[inv];
      assert.equal(invited?.membership, 'invite');
      assert.ok(Array.isArray(invited?.stripped_state));
      const bad = await bob.post(V4_PATH, { ...body, pos: 'nonsense' });
      assert.equal(bad.body.errcode, 'M_UNKNOWN_POS');
    });
  });
}
