/**
 * GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (v1.15) over real HTTP: rooms of this server by id and by alias,
 * with and without a token, for joined, invited, knocking, restricted-allowed and unrelated users, world_readable
 * history, unknown rooms; and a room of another Hearth asked through `via` over federation. Bodies are checked
 * against room_summary.yaml.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import { responseProblems } from '../helpers/openapi-shape.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/until.js';

type User = Client & { userId: string };
const enc = encodeURIComponent;
const path = (room: string, query = ''): string => `/_matrix/client/v1/room_summary/${enc(room)}${query}`;

async function summary(c: Client, room: string, query = '', token?: null): Promise<Json> {
  const res = await c.get(path(room, query), token === null ? { token: null } : undefined);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const problems = responseProblems(
    'room_summary.yaml',
    '/room_summary/{roomIdOrAlias}',
    'get',
    200,
    res.body,
  );
  assert.deepEqual(problems, [], JSON.stringify(res.body));
  return res.body;
}

async function notFound(c: Client, room: string, token?: null): Promise<void> {
  const res = await c.get(path(room), token === null ? { token: null } : undefined);
  assert.equal(res.status, 404, JSON.stringify(res.body));
  assert.equal(res.body.errcode, 'M_NOT_FOUND');
}

async function createRoom(c: Client, body: Json): Promise<string> {
  const res = await c.post('/_matrix/client/v3/createRoom', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

for (const engine of ENGINES) {
  describe(`${engine}: room summaries of this server's rooms`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    let publicRoom: string;
    let privateRoom: string;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('sum_alice');
      bob = await server.user('sum_bob');
      carol = await server.user('sum_carol');
      publicRoom = await createRoom(alice, {
        preset: 'public_chat',
        name: 'Cheese',
        topic: 'Tasty',
        room_alias_name: 'cheese',
      });
      privateRoom = await createRoom(alice, {
        preset: 'private_chat',
        name: 'Secret',
        initial_state: [
          { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
        ],
      });
    });
    after(() => server.close());

    it('summarises a public room by id and by alias, with the membership of the caller', async () => {
      const byId = await summary(bob, publicRoom);
      assert.equal(byId.room_id, publicRoom);
      assert.equal(byId.name, 'Cheese');
      assert.equal(byId.topic, 'Tasty');
      assert.equal(byId.join_rule, 'public');
      assert.equal(byId.num_joined_members, 1);
      assert.equal(byId.membership, 'leave');
      assert.equal(typeof byId.room_version, 'string');
      const byAlias = await summary(alice, `#cheese:${server.serverName}`);
      assert.equal(byAlias.room_id, publicRoom);
      assert.equal(byAlias.membership, 'join');
      // Without a token: no membership.
      const anon = await summary(server.client(), publicRoom, '', null);
      assert.equal(anon.room_id, publicRoom);
      assert.equal('membership' in anon, false);
    });

    it('a private room: members and invitees see it (with encryption), others and anonymous callers get 404', async () => {
      const own = await summary(alice, privateRoom);
      assert.equal(own.membership, 'join');
      assert.equal(own.encryption, 'm.megolm.v1.aes-sha2');
      assert.equal(own.join_rule, 'invite');
      await notFound(bob, privateRoom);
      await notFound(server.client(), privateRoom, null);
      const inv = await alice.post(`/_matrix/client/v3/rooms/${enc(privateRoom)}/invite`, {
        user_id: bob.userId,
      });
      assert.equal(inv.status, 200, JSON.stringify(inv.body));
      assert.equal((await summary(bob, privateRoom)).membership, 'invite');
      await notFound(carol, privateRoom);
    });

    it('world_readable history and knock rules open the summary; restricted rooms open to members of an allowed room', async () => {
      const readable = await createRoom(alice, {
        preset: 'private_chat',
        initial_state: [
          {
            type: 'm.room.history_visibility',
            state_key: '',
            content: { history_visibility: 'world_readable' },
          },
        ],
      });
      assert.equal((await summary(server.client(), readable, '', null)).world_readable, true);
      const knock = await createRoom(alice, {
        preset: 'private_chat',
        room_version: '10',
        initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }],
      });
      assert.equal((await summary(carol, knock)).join_rule, 'knock');
      const restricted = await createRoom(alice, {
        preset: 'private_chat',
        room_version: '10',
        initial_state: [
          {
            type: 'm.room.join_rules',
            state_key: '',
            content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: publicRoom }] },
          },
        ],
      });
      await notFound(carol, restricted);
      const joined = await carol.post(`/_matrix/client/v3/join/${enc(publicRoom)}`, {});
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      const seen = await summary(carol, restricted);
      assert.deepEqual(seen.allowed_room_ids, [publicRoom]);
      assert.equal(seen.membership, 'leave');
      await notFound(server.client(), restricted, null);
    });

    it('unknown rooms and aliases are 404; malformed identifiers and bad tokens are refused', async () => {
      await notFound(bob, `!nope:${server.serverName}`);
      await notFound(bob, `#nope:${server.serverName}`);
      const bad = await bob.get(path('garbage'));
      assert.equal(bad.status, 400);
      const badToken = await bob.get(path(publicRoom), { token: 'not-a-token' });
      assert.equal(badToken.status, 401);
      assert.equal(badToken.body.errcode, 'M_UNKNOWN_TOKEN');
    });
  });

  describe(`${engine}: room summaries over federation`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let alice: User;
    let bob: User;

    before(async () => {
      a = await startFederatedServer(engine);
      b = await startFederatedServer(engine);
      alice = await a.user('fsum_alice');
      bob = await b.user('fsum_bob');
    });
    after(async () => {
      await a.close();
      await b.close();
    });

    it('asks the via servers for a room this server is not in; an invite-only room is shown to its invitee only', async () => {
      const pub = await createRoom(alice, { preset: 'public_chat', name: 'Over there' });
      await notFound(bob, pub);
      const remote = await summary(bob, pub, `?via=${enc(a.serverName)}`);
      assert.equal(remote.room_id, pub);
      assert.equal(remote.name, 'Over there');
      assert.equal(remote.membership, 'leave');
      const priv = await createRoom(alice, { preset: 'private_chat', name: 'Hidden' });
      const before = await bob.get(path(priv, `?via=${enc(a.serverName)}`));
      assert.equal(before.status, 404, JSON.stringify(before.body));
      const inv = await alice.post(`/_matrix/client/v3/rooms/${enc(priv)}/invite`, { user_id: bob.userId });
      assert.equal(inv.status, 200, JSON.stringify(inv.body));
      const seen = await until('the invite to reach B', async () => {
        const res = await bob.get(path(priv, `?via=${enc(a.serverName)}`));
        return res.status === 200 ? res.body : undefined;
      });
      assert.equal(seen.membership, 'invite');
    });
  });
}
