/**
 * Room discovery over federation between two Hearths: B's user lists A's published rooms (GET, POST with a search
 * term, paging) through `server=`, a signed /publicRooms request is answered and an unsigned one is a 401; a space on
 * A with a public and an invite-only child is browsed from B (the space and the public child only) and the public
 * child joined through its `via`; /hierarchy and /timestamp_to_event over federation answer only what B's server may
 * see. Every engine.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { FederationError } from '../../src/federation/client.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import type { Client, Json } from '../helpers/server.js';
import { until } from '../helpers/until.js';

type Me = Client & { userId: string };

/** An unsigned GET to a federation listener (its certificate is self-signed). */
function unsigned(base: string, path: string): Promise<{ status: number; body: Json }> {
  return new Promise((resolve, reject) => {
    const req = request(base + path, { method: 'GET', rejectUnauthorized: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

const ids = (chunk: unknown): string[] => (chunk as { room_id: string }[]).map((r) => r.room_id).sort();

async function federationFailure(p: Promise<unknown>): Promise<FederationError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof FederationError) return err;
    throw err;
  }
  throw new Error('the request succeeded');
}

for (const engine of ENGINES) {
  describe(`${engine}: room discovery over federation`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let alice: Me;
    let bob: Me;
    let knitting: string;
    let garden: string;

    const createRoom = async (body: Json): Promise<string> => {
      const res = await alice.post('/_matrix/client/v3/createRoom', body);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.room_id as string;
    };

    before(async () => {
      a = await startFederatedServer(engine);
      b = await startFederatedServer(engine);
      alice = await a.user('alice');
      bob = await b.user('bob');
      knitting = await createRoom({ preset: 'public_chat', visibility: 'public', name: 'Knitting circle' });
      garden = await createRoom({ preset: 'public_chat', visibility: 'public', name: 'Garden club' });
      // Published nowhere: never listed.
      await createRoom({ preset: 'public_chat', name: 'Unlisted' });
    });
    after(async () => {
      await Promise.allSettled([a?.close(), b?.close()]);
    });

    it("B's user lists A's directory with GET and POST through server=", async () => {
      const server = encodeURIComponent(a.serverName);
      const all = await bob.get(`/_matrix/client/v3/publicRooms?server=${server}`);
      assert.equal(all.status, 200, JSON.stringify(all.body));
      assert.deepEqual(ids(all.body.chunk), [knitting, garden].sort());
      assert.equal(all.body.total_room_count_estimate, 2);
      const named = (all.body.chunk as { room_id: string; name?: string }[]).find(
        (r) => r.room_id === garden,
      );
      assert.equal(named?.name, 'Garden club');

      const search = await bob.post(`/_matrix/client/v3/publicRooms?server=${server}`, {
        filter: { generic_search_term: 'KNIT' },
      });
      assert.equal(search.status, 200, JSON.stringify(search.body));
      assert.deepEqual(ids(search.body.chunk), [knitting]);

      // Paging: A's tokens come back through B.
      const first = await bob.get(`/_matrix/client/v3/publicRooms?server=${server}&limit=1`);
      assert.equal((first.body.chunk as Json[]).length, 1);
      assert.equal(typeof first.body.next_batch, 'string');
      const second = await bob.get(
        `/_matrix/client/v3/publicRooms?server=${server}&limit=1&since=${encodeURIComponent(first.body.next_batch as string)}`,
      );
      assert.equal(second.status, 200, JSON.stringify(second.body));
      assert.deepEqual(
        [...ids(first.body.chunk), ...ids(second.body.chunk)].sort(),
        [knitting, garden].sort(),
      );

      // A's own refusal comes back as a Matrix error; an unreachable server is a 502.
      const badToken = await bob.get(`/_matrix/client/v3/publicRooms?server=${server}&since=garbage`);
      assert.equal(badToken.status, 400, JSON.stringify(badToken.body));
      assert.equal(badToken.body.errcode, 'M_INVALID_PARAM');
      const down = await bob.get(
        `/_matrix/client/v3/publicRooms?server=${encodeURIComponent('127.0.0.1:1')}`,
      );
      assert.equal(down.status, 502, JSON.stringify(down.body));
      assert.equal(typeof down.body.errcode, 'string');
      const invalid = await bob.get('/_matrix/client/v3/publicRooms?server=not%20a%20server');
      assert.equal(invalid.status, 400);
      assert.equal(invalid.body.errcode, 'M_INVALID_PARAM');
    });

    it('answers a signed /publicRooms and refuses an unsigned one', async () => {
      const client = b.hs.federation.client;
      const got = await client.get(a.serverName, '/_matrix/federation/v1/publicRooms', {
        query: { limit: '5' },
      });
      assert.deepEqual(ids((got.body as Json).chunk), [knitting, garden].sort());
      const posted = await client.post(a.serverName, '/_matrix/federation/v1/publicRooms', {
        filter: { generic_search_term: 'garden' },
      });
      assert.deepEqual(ids((posted.body as Json).chunk), [garden]);
      // Synapse 1.67 sends include_all_networks as a string in the body too.
      const synapseStyle = await client.post(a.serverName, '/_matrix/federation/v1/publicRooms', {
        include_all_networks: 'false',
        limit: 5,
        filter: { generic_search_term: 'garden' },
      });
      assert.deepEqual(ids((synapseStyle.body as Json).chunk), [garden]);
      const network = await client.get(a.serverName, '/_matrix/federation/v1/publicRooms', {
        query: { third_party_instance_id: 'irc|freenode' },
      });
      assert.deepEqual((network.body as Json).chunk, []);

      const res = await unsigned(a.federationUrl, '/_matrix/federation/v1/publicRooms');
      assert.equal(res.status, 401, JSON.stringify(res.body));
      assert.equal(res.body.errcode, 'M_UNAUTHORIZED');
      const bad = await federationFailure(
        client.get(a.serverName, '/_matrix/federation/v1/publicRooms', { query: { limit: 'many' } }),
      );
      assert.equal(bad.status, 400);
    });

    it("B's user browses a space on A, sees the public child only, and joins it through via", async () => {
      const via = [a.serverName];
      // A v10 space: its id names A, the server B asks first.
      const space = await createRoom({
        preset: 'public_chat',
        room_version: '10',
        name: 'Crafts',
        creation_content: { type: 'm.space' },
      });
      const open = await createRoom({ preset: 'public_chat', name: 'Open child', topic: 'all welcome' });
      const closed = await createRoom({ preset: 'private_chat', name: 'Closed child' });
      for (const [child, order] of [
        [open, 'a'],
        [closed, 'b'],
      ] as const) {
        const put = await alice.put(
          `/_matrix/client/v3/rooms/${encodeURIComponent(space)}/state/m.space.child/${encodeURIComponent(child)}`,
          { via, order },
        );
        assert.equal(put.status, 200, JSON.stringify(put.body));
      }

      const res = await bob.get(`/_matrix/client/v1/rooms/${encodeURIComponent(space)}/hierarchy`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const rooms = res.body.rooms as {
        room_id: string;
        name?: string;
        topic?: string;
        children_state: { state_key: string; content: { via: string[] } }[];
      }[];
      assert.deepEqual(
        rooms.map((r) => r.room_id),
        [space, open],
      );
      assert.equal(rooms[0]?.name, 'Crafts');
      assert.deepEqual(rooms[0]?.children_state.map((c) => c.state_key).sort(), [open, closed].sort());
      assert.equal(rooms[1]?.topic, 'all welcome');
      assert.deepEqual(rooms[1]?.children_state, []);

      // The resident side's answer: the closed child is named as inaccessible to B's server.
      const fed = await b.hs.federation.client.get(
        a.serverName,
        `/_matrix/federation/v1/hierarchy/${encodeURIComponent(space)}`,
      );
      const body = fed.body as Json & { room: Json };
      assert.equal(body.room.room_id, space);
      assert.equal(body.room.room_type, 'm.space');
      assert.deepEqual(ids(body.children), [open]);
      assert.deepEqual(body.inaccessible_children, [closed]);
      const hidden = await federationFailure(
        b.hs.federation.client.get(
          a.serverName,
          `/_matrix/federation/v1/hierarchy/${encodeURIComponent(closed)}`,
        ),
      );
      assert.equal(hidden.status, 404);
      assert.equal(hidden.errcode, 'M_NOT_FOUND');

      // Join the child by id through the via the hierarchy gave.
      const childVia = rooms[0]?.children_state.find((c) => c.state_key === open)?.content.via ?? [];
      const query = childVia.map((s) => `via=${encodeURIComponent(s)}`).join('&');
      const joined = await bob.post(`/_matrix/client/v3/join/${encodeURIComponent(open)}?${query}`, {});
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      const members = await alice.get(`/_matrix/client/v3/rooms/${encodeURIComponent(open)}/joined_members`);
      assert.ok(bob.userId in (members.body.joined as Json));

      // Once B's user is in the space too, the root is read locally and the child still shows once.
      const inSpace = await bob.post(
        `/_matrix/client/v3/join/${encodeURIComponent(space)}?via=${via[0]}`,
        {},
      );
      assert.equal(inSpace.status, 200, JSON.stringify(inSpace.body));
      const again = await bob.get(`/_matrix/client/v1/rooms/${encodeURIComponent(space)}/hierarchy`);
      assert.deepEqual(
        (again.body.rooms as { room_id: string }[]).map((r) => r.room_id),
        [space, open],
      );

      // A child restricted to the space's members: A shows it to B's server (one of its users is in the space),
      // B shows it to the user in the space and not to another.
      const restricted = await createRoom({
        preset: 'private_chat',
        name: 'Members only',
        initial_state: [
          {
            type: 'm.room.join_rules',
            state_key: '',
            content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] },
          },
        ],
      });
      const linked = await alice.put(
        `/_matrix/client/v3/rooms/${encodeURIComponent(space)}/state/m.space.child/${encodeURIComponent(restricted)}`,
        { via, order: 'c' },
      );
      assert.equal(linked.status, 200, JSON.stringify(linked.body));
      const seen = async (who: Me) => {
        const h = await who.get(`/_matrix/client/v1/rooms/${encodeURIComponent(space)}/hierarchy`);
        assert.equal(h.status, 200, JSON.stringify(h.body));
        return h.body.rooms as { room_id: string; allowed_room_ids?: string[] }[];
      };
      const bobSees = await until('the new child', async () => {
        const r = await seen(bob);
        return r.length === 3 ? r : undefined;
      });
      assert.deepEqual(
        bobSees.map((r) => r.room_id),
        [space, open, restricted],
      );
      assert.deepEqual(bobSees[2]?.allowed_room_ids, [space]);
      const carol = await b.user('carol');
      assert.deepEqual(
        (await seen(carol)).map((r) => r.room_id),
        [space, open],
      );

      // A private space on A that B's server is not in cannot be browsed from B.
      const secret = await createRoom({
        preset: 'private_chat',
        room_version: '10',
        creation_content: { type: 'm.space' },
      });
      const refused = await bob.get(`/_matrix/client/v1/rooms/${encodeURIComponent(secret)}/hierarchy`);
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.equal(refused.body.errcode, 'M_FORBIDDEN');
    });

    it('timestamp_to_event over federation finds the event A finds; a room B is not in is refused', async () => {
      const roomId = await createRoom({ preset: 'public_chat', name: 'Diary' });
      const r = encodeURIComponent(roomId);
      const joined = await bob.post(
        `/_matrix/client/v3/join/${r}?via=${encodeURIComponent(a.serverName)}`,
        {},
      );
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      const sent = await alice.put(`/_matrix/client/v3/rooms/${r}/send/m.room.message/t1`, {
        msgtype: 'm.text',
        body: 'dear diary',
      });
      assert.equal(sent.status, 200);
      const ts = Date.now() + 1000;

      const local = await alice.get(`/_matrix/client/v1/rooms/${r}/timestamp_to_event?ts=${ts}&dir=b`);
      assert.equal(local.status, 200, JSON.stringify(local.body));
      assert.equal(local.body.event_id, sent.body.event_id);
      const fed = await b.hs.federation.client.get(
        a.serverName,
        `/_matrix/federation/v1/timestamp_to_event/${r}`,
        {
          query: { ts: String(ts), dir: 'b' },
        },
      );
      assert.deepEqual(fed.body, local.body);
      const forward = await b.hs.federation.client.get(
        a.serverName,
        `/_matrix/federation/v1/timestamp_to_event/${r}`,
        { query: { ts: '0', dir: 'f' } },
      );
      assert.equal(typeof (forward.body as Json).event_id, 'string');
      const none = await federationFailure(
        b.hs.federation.client.get(a.serverName, `/_matrix/federation/v1/timestamp_to_event/${r}`, {
          query: { ts: String(ts + 60_000), dir: 'f' },
        }),
      );
      assert.equal(none.status, 404);
      assert.equal(none.errcode, 'M_NOT_FOUND');

      const privateRoom = await createRoom({ preset: 'private_chat' });
      const refused = await federationFailure(
        b.hs.federation.client.get(
          a.serverName,
          `/_matrix/federation/v1/timestamp_to_event/${encodeURIComponent(privateRoom)}`,
          { query: { ts: String(ts), dir: 'b' } },
        ),
      );
      assert.equal(refused.status, 403);
      assert.equal(refused.errcode, 'M_FORBIDDEN');
      const unknown = await federationFailure(
        b.hs.federation.client.get(
          a.serverName,
          `/_matrix/federation/v1/timestamp_to_event/${encodeURIComponent('!nope:elsewhere')}`,
          {
            query: { ts: String(ts), dir: 'b' },
          },
        ),
      );
      assert.equal(unknown.status, 404);
      const badDir = await federationFailure(
        b.hs.federation.client.get(a.serverName, `/_matrix/federation/v1/timestamp_to_event/${r}`, {
          query: { ts: String(ts), dir: 'sideways' },
        }),
      );
      assert.equal(badDir.status, 400);
    });
  });
}
