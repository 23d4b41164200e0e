import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const enc = encodeURIComponent;
const path = (roomId: string, query = '') => `/_matrix/client/v1/rooms/${enc(roomId)}/hierarchy${query}`;

async function create(c: Client, body: Record<string, unknown>): Promise<string> {
  const res = await c.post('/_matrix/client/v3/createRoom', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

async function link(
  c: Client,
  parent: string,
  child: string,
  content: Record<string, unknown>,
): Promise<void> {
  const res = await c.put(
    `/_matrix/client/v3/rooms/${enc(parent)}/state/m.space.child/${enc(child)}`,
    content,
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

const ids = (body: Record<string, unknown>) => (body.rooms as { room_id: string }[]).map((r) => r.room_id);

for (const engine of ENGINES) {
  describe(`${engine}: space hierarchy`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let bob: Client & { userId: string };
    let space: string;
    let sub: string;
    let a: string;
    let b: string;
    let c: string;
    let secret: string;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      const spaceBody = { preset: 'public_chat', creation_content: { type: 'm.space' } };
      space = await create(alice, { ...spaceBody, name: 'Space', topic: 'Top' });
      sub = await create(alice, { ...spaceBody, name: 'Sub space' });
      a = await create(alice, { preset: 'public_chat', name: 'A' });
      b = await create(alice, { preset: 'public_chat', name: 'B' });
      c = await create(alice, { preset: 'public_chat', name: 'C' });
      secret = await create(alice, { preset: 'private_chat', name: 'Secret' });
      // Ordered by `order`, then by timestamp: sub ("a"), b ("b"), then a and secret (no order).
      await link(alice, space, a, { via: ['test.local'] });
      await link(alice, space, b, { via: ['test.local'], order: 'b', suggested: true });
      await link(alice, space, sub, { via: ['test.local'], order: 'a' });
      await link(alice, space, secret, { via: ['test.local'] });
      await link(alice, space, '!invalid:test.local', { via: [] });
      await link(alice, space, '!unknown:test.local', { via: ['elsewhere.example'] });
      await link(alice, sub, c, { via: ['test.local'], suggested: true });
      // A parent link does not make a room a child.
      const parent = await alice.put(
        `/_matrix/client/v3/rooms/${enc(c)}/state/m.space.parent/${enc(space)}`,
        {
          via: ['test.local'],
        },
      );
      assert.equal(parent.status, 200);
    });
    after(() => server.close());

    it('walks the space depth-first, showing only rooms the user may see', async () => {
      const res = await bob.get(path(space));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(ids(res.body), [space, sub, c, b, a]);
      assert.equal(res.body.next_batch, undefined);
      const root = (res.body.rooms as Record<string, unknown>[])[0] as Record<string, unknown>;
      const { children_state: children, ...summary } = root;
      assert.deepEqual(summary, {
        room_id: space,
        name: 'Space',
        topic: 'Top',
        num_joined_members: 1,
        join_rule: 'public',
        world_readable: false,
        guest_can_join: false,
        room_type: 'm.space',
        room_version: '12',
      });
      const childState = children as Record<string, unknown>[];
      assert.deepEqual(
        childState.map((e) => e.state_key),
        [sub, b, a, secret, '!unknown:test.local'],
        'valid children in order; the one with an empty via is left out',
      );
      assert.deepEqual(Object.keys(childState[0] as object).sort(), [
        'content',
        'origin_server_ts',
        'sender',
        'state_key',
        'type',
      ]);
      assert.equal(childState[0]?.sender, alice.userId);
      const leaf = (res.body.rooms as Record<string, unknown>[]).find((r) => r.room_id === a);
      assert.deepEqual(leaf?.children_state, []);

      // The creator sees the private room too.
      assert.deepEqual(ids((await alice.get(path(space))).body), [space, sub, c, b, a, secret]);
    });

    it('honours max_depth and suggested_only', async () => {
      assert.deepEqual(ids((await bob.get(path(space, '?max_depth=0'))).body), [space]);
      assert.deepEqual(ids((await bob.get(path(space, '?max_depth=1'))).body), [space, sub, b, a]);
      const suggested = await bob.get(path(space, '?suggested_only=true'));
      assert.deepEqual(ids(suggested.body), [space, b]);
      const root = (suggested.body.rooms as Record<string, unknown>[])[0];
      assert.deepEqual(
        (root?.children_state as { state_key: string }[]).map((e) => e.state_key),
        [b],
      );
    });

    it('pages with an opaque token bound to the request', async () => {
      const seen: string[] = [];
      let from: string | undefined;
      let pages = 0;
      do {
        const res = await bob.get(path(space, `?limit=2${from ? `&from=${enc(from)}` : ''}`));
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.ok((res.body.rooms as unknown[]).length <= 2);
        seen.push(...ids(res.body));
        from = res.body.next_batch as string | undefined;
        pages += 1;
      } while (from && pages < 10);
      assert.deepEqual(seen, [space, sub, c, b, a]);

      const first = await bob.get(path(space, '?limit=1'));
      const token = first.body.next_batch as string;
      const changed = await bob.get(path(space, `?limit=1&max_depth=1&from=${enc(token)}`));
      assert.equal(changed.status, 400);
      assert.equal(changed.body.errcode, 'M_INVALID_PARAM');
      const otherUser = await alice.get(path(space, `?limit=1&from=${enc(token)}`));
      assert.equal(otherUser.status, 400);
      assert.equal(otherUser.body.errcode, 'M_INVALID_PARAM');
      const bogus = await bob.get(path(space, '?from=not-a-token'));
      assert.equal(bogus.status, 400);
      assert.equal(bogus.body.errcode, 'M_INVALID_PARAM');
    });

    it('rejects bad parameters and inaccessible or unknown roots', async () => {
      for (const q of ['?limit=0', '?limit=x', '?max_depth=-1', '?suggested_only=yes']) {
        const res = await bob.get(path(space, q));
        assert.equal(res.status, 400, q);
        assert.equal(res.body.errcode, 'M_INVALID_PARAM', q);
      }
      for (const roomId of [secret, '!nowhere:test.local']) {
        const res = await bob.get(path(roomId));
        assert.equal(res.status, 403);
        assert.equal(res.body.errcode, 'M_FORBIDDEN');
      }
      const anon = await server.client().get(path(space));
      assert.equal(anon.status, 401);
    });

    it('shows a restricted room to members of an allowed room', async () => {
      const restricted = await create(alice, {
        room_version: '10',
        name: 'Members only',
        initial_state: [
          {
            type: 'm.room.join_rules',
            content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] },
          },
        ],
      });
      const inner = await create(alice, { preset: 'public_chat', creation_content: { type: 'm.space' } });
      await link(alice, inner, restricted, { via: ['test.local'] });
      const outsider = await bob.get(path(inner));
      assert.deepEqual(ids(outsider.body), [inner], 'bob is not in the allowed room');
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${enc(space)}/join`, {})).status, 200);
      const member = await bob.get(path(inner));
      assert.deepEqual(ids(member.body), [inner, restricted]);
      const entry = (member.body.rooms as Record<string, unknown>[])[1];
      assert.deepEqual(entry?.allowed_room_ids, [space]);
      assert.equal(entry?.join_rule, 'restricted');
    });
  });
}
