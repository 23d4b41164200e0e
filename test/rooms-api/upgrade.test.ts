import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const enc = encodeURIComponent;

async function state(c: Client, roomId: string, type: string, key = ''): Promise<Record<string, unknown>> {
  const res = await c.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state/${type}/${enc(key)}`);
  assert.equal(res.status, 200, `${type}: ${JSON.stringify(res.body)}`);
  return res.body;
}

async function putState(c: Client, roomId: string, type: string, content: unknown, key = ''): Promise<void> {
  const res = await c.put(`/_matrix/client/v3/rooms/${enc(roomId)}/state/${type}/${enc(key)}`, content);
  assert.equal(res.status, 200, `${type}: ${JSON.stringify(res.body)}`);
}

const upgrade = (c: Client, roomId: string, body: unknown) =>
  c.post(`/_matrix/client/v3/rooms/${enc(roomId)}/upgrade`, body);

for (const engine of ENGINES) {
  describe(`${engine}: room upgrades`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('upgrades a room end to end', async () => {
      const alice = await server.user('alice');
      const bob = await server.user('bob');
      const mallory = await server.user('mallory');
      const created = await alice.post('/_matrix/client/v3/createRoom', {
        room_version: '10',
        preset: 'public_chat',
        visibility: 'public',
        name: 'Old room',
        topic: 'About things',
        room_alias_name: 'things',
        power_level_content_override: { users: { [alice.userId]: 100, [bob.userId]: 50 } },
      });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const oldRoom = created.body.room_id as string;
      const rid = enc(oldRoom);
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);
      assert.equal((await mallory.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);
      const ban = await alice.post(`/_matrix/client/v3/rooms/${rid}/ban`, {
        user_id: mallory.userId,
        reason: 'spam',
      });
      assert.equal(ban.status, 200, JSON.stringify(ban.body));
      await putState(alice, oldRoom, 'm.room.avatar', { url: 'mxc://test.local/avatar' });
      await putState(alice, oldRoom, 'm.room.encryption', { algorithm: 'm.megolm.v1.aes-sha2' });
      await putState(alice, oldRoom, 'm.room.server_acl', {
        allow: ['*'],
        deny: [],
        allow_ip_literals: false,
      });
      await putState(alice, oldRoom, 'm.room.canonical_alias', {
        alias: '#things:test.local',
        alt_aliases: ['#things:test.local', '#remote:elsewhere.example'],
      });

      // A user without the power to send m.room.tombstone may not upgrade.
      const denied = await upgrade(bob, oldRoom, { new_version: '11' });
      assert.equal(denied.status, 403);
      assert.equal(denied.body.errcode, 'M_FORBIDDEN');

      const res = await upgrade(alice, oldRoom, { new_version: '11' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const newRoom = res.body.replacement_room as string;
      assert.match(newRoom, /^!.+:test\.local$/);
      assert.notEqual(newRoom, oldRoom);

      // The tombstone points at the new room.
      const tombstone = await state(alice, oldRoom, 'm.room.tombstone');
      assert.deepEqual(tombstone, { body: 'This room has been replaced', replacement_room: newRoom });

      // The new room names its predecessor and has the old room's state.
      const create = await state(alice, newRoom, 'm.room.create');
      assert.equal(create.room_version, '11');
      const predecessor = create.predecessor as Record<string, unknown>;
      assert.equal(predecessor.room_id, oldRoom);
      assert.match(predecessor.event_id as string, /^\$/);
      assert.equal((await state(alice, newRoom, 'm.room.name')).name, 'Old room');
      assert.equal((await state(alice, newRoom, 'm.room.topic')).topic, 'About things');
      assert.equal((await state(alice, newRoom, 'm.room.join_rules')).join_rule, 'public');
      assert.equal((await state(alice, newRoom, 'm.room.history_visibility')).history_visibility, 'shared');
      assert.equal((await state(alice, newRoom, 'm.room.guest_access')).guest_access, 'forbidden');
      assert.equal((await state(alice, newRoom, 'm.room.avatar')).url, 'mxc://test.local/avatar');
      assert.equal((await state(alice, newRoom, 'm.room.encryption')).algorithm, 'm.megolm.v1.aes-sha2');
      assert.deepEqual((await state(alice, newRoom, 'm.room.server_acl')).allow, ['*']);
      assert.equal((await state(alice, newRoom, 'm.room.member', mallory.userId)).membership, 'ban');
      const newPl = await state(alice, newRoom, 'm.room.power_levels');
      assert.deepEqual(newPl.users, { [alice.userId]: 100, [bob.userId]: 50 });
      assert.equal(newPl.events_default, 0, 'the new room has the old room power levels, unrestricted');

      // The alias moved, and the canonical alias with its local alt aliases.
      const alias = await server
        .client()
        .get(`/_matrix/client/v3/directory/room/${enc('#things:test.local')}`);
      assert.equal(alias.body.room_id, newRoom);
      assert.deepEqual(await state(alice, newRoom, 'm.room.canonical_alias'), {
        alias: '#things:test.local',
        alt_aliases: ['#things:test.local'],
      });
      assert.deepEqual(await state(alice, oldRoom, 'm.room.canonical_alias'), {
        alt_aliases: ['#remote:elsewhere.example'],
      });

      // The directory listing moved.
      const anon = server.client();
      assert.deepEqual((await anon.get(`/_matrix/client/v3/directory/list/room/${rid}`)).body, {
        visibility: 'private',
      });
      assert.deepEqual((await anon.get(`/_matrix/client/v3/directory/list/room/${enc(newRoom)}`)).body, {
        visibility: 'public',
      });

      // The old room is restricted: regular users may no longer talk or invite.
      const oldPl = await state(alice, oldRoom, 'm.room.power_levels');
      assert.equal(oldPl.events_default, 50);
      assert.equal(oldPl.invite, 50);
      const talk = await mallory.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/t1`, { body: 'x' });
      assert.equal(talk.status, 403);
      const bobTalks = await bob.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/t1`, {
        body: 'hi',
      });
      assert.equal(bobTalks.status, 200, 'moderators still can');

      // Members follow to the new room.
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${enc(newRoom)}/join`, {})).status, 200);
    });

    it('upgrades to v12 with additional creators and a predecessor without event id', async () => {
      const carol = await server.user('carol');
      const dave = await server.user('dave');
      const created = await carol.post('/_matrix/client/v3/createRoom', {
        room_version: '11',
        preset: 'private_chat',
        invite: [dave.userId],
      });
      const oldRoom = created.body.room_id as string;
      const res = await upgrade(carol, oldRoom, { new_version: '12', additional_creators: [dave.userId] });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const newRoom = res.body.replacement_room as string;
      assert.ok(!newRoom.includes(':'), 'v12 room ids are hashes');
      const create = await state(carol, newRoom, 'm.room.create');
      assert.deepEqual(create.predecessor, { room_id: oldRoom });
      assert.deepEqual(create.additional_creators, [dave.userId]);
      const pl = await state(carol, newRoom, 'm.room.power_levels');
      assert.deepEqual(pl.users, {}, 'creators are not listed in v12 power levels');
      assert.equal((await state(carol, newRoom, 'm.room.join_rules')).join_rule, 'invite');
      assert.equal((await state(carol, oldRoom, 'm.room.tombstone')).replacement_room, newRoom);

      // And a v12 room can be upgraded again: its creators keep power in a room version without creators.
      const again = await upgrade(carol, newRoom, { new_version: '11' });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      const pl11 = await state(carol, again.body.replacement_room as string, 'm.room.power_levels');
      assert.deepEqual(pl11.users, { [carol.userId]: 100, [dave.userId]: 100 });
    });

    it('raises a moderator upgrader only while copying state, and copes with an unrestrictable old room', async () => {
      const hank = await server.user('hank');
      const ivy = await server.user('ivy');
      const created = await hank.post('/_matrix/client/v3/createRoom', {
        room_version: '11',
        preset: 'public_chat',
        power_level_content_override: {
          users: { [hank.userId]: 100, [ivy.userId]: 50 },
          events: { 'm.room.tombstone': 50, 'm.room.power_levels': 100 },
        },
      });
      const oldRoom = created.body.room_id as string;
      assert.equal((await ivy.post(`/_matrix/client/v3/rooms/${enc(oldRoom)}/join`, {})).status, 200);
      const res = await upgrade(ivy, oldRoom, { new_version: '11' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const newRoom = res.body.replacement_room as string;
      const pl = await state(ivy, newRoom, 'm.room.power_levels');
      assert.deepEqual(pl.users, { [hank.userId]: 100, [ivy.userId]: 50 }, 'restored after the copy');
      // Ivy may not change the old room's power levels: the upgrade still succeeds, the old room stays open.
      assert.equal((await state(hank, oldRoom, 'm.room.power_levels')).events_default, 0);
      assert.equal((await state(hank, oldRoom, 'm.room.tombstone')).replacement_room, newRoom);
    });

    it('upgrades a space with its children', async () => {
      const erin = await server.user('erin');
      const created = await erin.post('/_matrix/client/v3/createRoom', {
        creation_content: { type: 'm.space' },
        initial_state: [
          { type: 'm.space.child', state_key: '!child:test.local', content: { via: ['test.local'] } },
          { type: 'm.space.child', state_key: '!gone:test.local', content: {} },
        ],
      });
      const oldRoom = created.body.room_id as string;
      const res = await upgrade(erin, oldRoom, { new_version: '12' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const newRoom = res.body.replacement_room as string;
      assert.equal((await state(erin, newRoom, 'm.room.create')).type, 'm.space');
      assert.deepEqual(await state(erin, newRoom, 'm.space.child', '!child:test.local'), {
        via: ['test.local'],
      });
      const gone = await erin.get(
        `/_matrix/client/v3/rooms/${enc(newRoom)}/state/m.space.child/${enc('!gone:test.local')}`,
      );
      assert.equal(gone.status, 404, 'removed children are not copied');
    });

    it('rejects unsupported versions, unknown rooms, non-members and bad bodies', async () => {
      const frank = await server.user('frank');
      const gina = await server.user('gina');
      const created = await frank.post('/_matrix/client/v3/createRoom', {});
      const roomId = created.body.room_id as string;
      for (const v of ['999', '13', '0']) {
        const res = await upgrade(frank, roomId, { new_version: v });
        assert.equal(res.status, 400, v);
        assert.equal(res.body.errcode, 'M_UNSUPPORTED_ROOM_VERSION');
      }
      const missing = await upgrade(frank, roomId, {});
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
      const unknown = await upgrade(frank, '!nowhere:test.local', { new_version: '11' });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
      const stranger = await upgrade(gina, roomId, { new_version: '11' });
      assert.equal(stranger.status, 403);
      assert.equal(stranger.body.errcode, 'M_FORBIDDEN');
      const anon = await server.client().post(`/_matrix/client/v3/rooms/${enc(roomId)}/upgrade`, {
        new_version: '11',
      });
      assert.equal(anon.status, 401);
    });
  });
}
