/**
 * Membership over federation beyond plain joins, between three Hearths on loopback (A resident, B and C joining):
 * knocks (make_knock/send_knock, the knock in B's /sync, accepted by an invite and followed by a join, refused in a
 * room that does not allow knocking), restricted joins (authorised by A's user, refused for a user outside the
 * space, C's M_UNABLE_TO_GRANT_JOIN skipped for A), rejecting an invite and rescinding a knock through make_leave/
 * send_leave (or here only when no resident server answers), the v1 send_join/send_leave answers, and the
 * third-party invite endpoints' Matrix errors.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { FederationError } from '../../src/federation/client.js';
import { runDoctor } from '../../src/integrity/doctor.js';
import type { JsonObject } from '../../src/rooms/event.js';
import { findRoomVersion } from '../../src/rooms/room-versions.js';
import { buildFromTemplate } from '../../src/roomsvc/remote-membership.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import type { Client } from '../helpers/server.js';
import { until } from '../helpers/until.js';

type Me = Client & { userId: string };
type Answer = { status: number; body: JsonObject & { errcode?: string } };

const enc = encodeURIComponent;
const VERSION = '12';

/** A signed federation request from `from` to `to`; refusals come back as their status and body. */
async function fed(
  from: FederatedServer,
  to: FederatedServer,
  method: 'GET' | 'PUT',
  path: string,
  opts: { query?: Record<string, string | string[]>; body?: unknown } = {},
): Promise<Answer> {
  try {
    const res = await from.hs.federation.client.request(to.serverName, method, path, opts);
    return { status: res.status, body: res.body as JsonObject };
  } catch (err) {
    if (err instanceof FederationError && err.status !== undefined)
      return { status: err.status, body: (err.body ?? {}) as JsonObject };
    throw err;
  }
}

/** An unauthenticated request to a federation listener (identity servers call /3pid/onbind so). */
function unsigned(base: string, method: string, path: string, body: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request(
      base + path,
      { method, headers: { 'content-type': 'application/json' }, rejectUnauthorized: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as JsonObject,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

async function membershipOn(c: Me, roomId: string, userId: string): Promise<string | undefined> {
  const res = await c.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
  return res.status === 200 ? (res.body.membership as string) : undefined;
}

async function doctorClean(s: FederatedServer, roomId: string): Promise<void> {
  const report = await runDoctor(s.hs.storage, {
    roomId,
    exclusive: (id, fn) => s.hs.writer.runExclusive(id, fn),
  });
  assert.deepEqual(report.problems, []);
}

type SyncRooms = Partial<Record<'join' | 'invite' | 'knock' | 'leave', Record<string, JsonObject>>>;

async function syncRooms(c: Me, since?: string): Promise<{ rooms: SyncRooms; next: string }> {
  const res = await c.get(`/_matrix/client/v3/sync${since ? `?since=${since}&timeout=0` : ''}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return { rooms: res.body.rooms as SyncRooms, next: res.body.next_batch as string };
}

for (const engine of ENGINES) {
  describe(`${engine}: membership over federation`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let c: FederatedServer;
    let alice: Me;
    let bob: Me;
    let carol: Me;

    const create = async (body: JsonObject): Promise<string> => {
      const res = await alice.post('/_matrix/client/v3/createRoom', { room_version: VERSION, ...body });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.room_id as string;
    };
    const viaA = () => `server_name=${enc(a.serverName)}`;

    before(async () => {
      [a, b, c] = await Promise.all([
        startFederatedServer(engine),
        startFederatedServer(engine),
        startFederatedServer(engine),
      ]);
      alice = await a.user('alice');
      bob = await b.user('bob');
      carol = await c.user('carol');
    });
    after(async () => {
      await Promise.allSettled([a.close(), b.close(), c.close()]);
    });

    it('knocks through the resident server; the knock is seen on both sides, accepted by an invite, then joined', async () => {
      const roomId = await create({
        preset: 'private_chat',
        name: 'knock here',
        initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }],
      });
      const { next } = await syncRooms(bob);
      const knocked = await bob.post(`/_matrix/client/v3/knock/${enc(roomId)}?${viaA()}`, {
        reason: 'let me in',
      });
      assert.equal(knocked.status, 200, JSON.stringify(knocked.body));
      assert.equal(knocked.body.room_id, roomId);

      // B's /sync shows the knock with the room's stripped state from knock_room_state.
      const { rooms } = await syncRooms(bob, next);
      type Stripped = { type: string; state_key: string; content: { name?: string; membership?: string } };
      const knock = rooms.knock?.[roomId] as { knock_state: { events: Stripped[] } } | undefined;
      assert.ok(knock, JSON.stringify(rooms));
      const events = knock.knock_state.events;
      assert.equal(events.find((e) => e.type === 'm.room.name')?.content.name, 'knock here');
      assert.ok(events.some((e) => e.type === 'm.room.create'));
      const own = events.find((e) => e.type === 'm.room.member' && e.state_key === bob.userId);
      assert.equal(own?.content.membership, 'knock');

      // A's user sees the knock and accepts it with an invite over federation.
      assert.equal(await membershipOn(alice, roomId, bob.userId), 'knock');
      const knockEvent = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`,
      );
      assert.equal(knockEvent.body.reason, 'let me in');
      const invited = await alice.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
        user_id: bob.userId,
      });
      assert.equal(invited.status, 200, JSON.stringify(invited.body));
      await doctorClean(b, roomId);
      const afterInvite = await syncRooms(bob, next);
      assert.ok(afterInvite.rooms.invite?.[roomId], JSON.stringify(afterInvite.rooms));
      assert.equal(afterInvite.rooms.knock?.[roomId], undefined);

      const joined = await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {});
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      await until('the join on A', async () =>
        (await membershipOn(alice, roomId, bob.userId)) === 'join' ? true : undefined,
      );
    });

    it('refuses a knock where the join rule does not allow it, and an unsupported room version', async () => {
      const roomId = await create({ preset: 'public_chat' });
      // The resident's 403 is relayed to the client as a Matrix error.
      const knocked = await bob.post(`/_matrix/client/v3/knock/${enc(roomId)}?${viaA()}`, {});
      assert.equal(knocked.status, 403, JSON.stringify(knocked.body));
      assert.equal(knocked.body.errcode, 'M_FORBIDDEN');
      const make = `/_matrix/federation/v1/make_knock/${enc(roomId)}/${enc(bob.userId)}`;
      const direct = await fed(b, a, 'GET', make, { query: { ver: [VERSION] } });
      assert.equal(direct.status, 403);
      assert.equal(direct.body.errcode, 'M_FORBIDDEN');
      const old = await fed(b, a, 'GET', make, { query: { ver: ['6', '7'] } });
      assert.equal(old.status, 400);
      assert.equal(old.body.errcode, 'M_INCOMPATIBLE_ROOM_VERSION');
      assert.equal(old.body.room_version, VERSION);
      // A knock event sent for a user of another server is refused.
      const forged = await fed(b, a, 'PUT', `/_matrix/federation/v1/send_knock/${enc(roomId)}/$x`, {
        body: {
          type: 'm.room.member',
          sender: alice.userId,
          state_key: alice.userId,
          content: { membership: 'knock' },
        },
      });
      assert.equal(forged.status, 400);
      assert.equal(forged.body.errcode, 'M_INVALID_PARAM');
      // A banned user cannot knock.
      const knockRoom = await create({
        preset: 'private_chat',
        initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }],
      });
      const banned = await alice.post(`/_matrix/client/v3/rooms/${enc(knockRoom)}/ban`, {
        user_id: bob.userId,
      });
      assert.equal(banned.status, 200, JSON.stringify(banned.body));
      const refused = await bob.post(`/_matrix/client/v3/knock/${enc(knockRoom)}?${viaA()}`, {});
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
    });

    it('rescinds a knock and rejects an invite with make_leave/send_leave', async () => {
      const knockRoom = await create({
        preset: 'private_chat',
        initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }],
      });
      const inviteRoom = await create({ preset: 'private_chat', name: 'declined' });
      const knocked = await bob.post(`/_matrix/client/v3/knock/${enc(knockRoom)}?${viaA()}`, {});
      assert.equal(knocked.status, 200, JSON.stringify(knocked.body));
      const invited = await alice.post(`/_matrix/client/v3/rooms/${enc(inviteRoom)}/invite`, {
        user_id: bob.userId,
      });
      assert.equal(invited.status, 200, JSON.stringify(invited.body));
      const { rooms: before, next } = await syncRooms(bob);
      assert.ok(before.knock?.[knockRoom] && before.invite?.[inviteRoom], JSON.stringify(before));

      for (const roomId of [knockRoom, inviteRoom]) {
        const left = await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/leave`, { reason: 'no thanks' });
        assert.equal(left.status, 200, JSON.stringify(left.body));
        // The resident server took the leave into the room.
        assert.equal(await membershipOn(alice, roomId, bob.userId), 'leave');
      }
      const { rooms } = await syncRooms(bob, next);
      for (const roomId of [knockRoom, inviteRoom]) {
        // The leave event is the room's timeline.
        const events = (rooms.leave?.[roomId] as { timeline?: { events: JsonObject[] } } | undefined)
          ?.timeline?.events;
        assert.equal(events?.length, 1, JSON.stringify(rooms));
        assert.equal(events[0]?.state_key, bob.userId);
        assert.deepEqual(events[0]?.content, { membership: 'leave', reason: 'no thanks' });
      }
      assert.equal(rooms.invite?.[inviteRoom], undefined);
      assert.equal(rooms.knock?.[knockRoom], undefined);
      for (const roomId of [knockRoom, inviteRoom]) await doctorClean(b, roomId);
      const full = await syncRooms(bob);
      assert.equal(full.rooms.invite?.[inviteRoom], undefined);
      assert.equal(full.rooms.knock?.[knockRoom], undefined);

      // Leaving again: the user has no invite or knock left, and this server is not in the room.
      const again = await bob.post(`/_matrix/client/v3/rooms/${enc(inviteRoom)}/leave`, {});
      assert.equal(again.status, 404, JSON.stringify(again.body));
    });

    it('joins a restricted room as a member of the allowed space; refuses others; skips a server that cannot grant', async () => {
      const space = await create({ preset: 'public_chat', creation_content: { type: 'm.space' } });
      const roomId = await create({
        preset: 'private_chat',
        power_level_content_override: { invite: 50 },
        initial_state: [
          {
            type: 'm.room.join_rules',
            state_key: '',
            content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] },
          },
        ],
      });
      const join = (who: Me, target: string, servers: FederatedServer[]) =>
        who.post(
          `/_matrix/client/v3/join/${enc(target)}?${servers.map((s) => `via=${enc(s.serverName)}`).join('&')}`,
          {},
        );

      // Bob is not in the space: A refuses.
      const outsider = await join(bob, roomId, [a]);
      assert.equal(outsider.status, 403, JSON.stringify(outsider.body));
      assert.equal(outsider.body.errcode, 'M_FORBIDDEN');

      // Carol (C) joins the space, then the room, authorised by Alice.
      assert.equal((await join(carol, space, [a])).status, 200);
      const carolJoin = await join(carol, roomId, [a]);
      assert.equal(carolJoin.status, 200, JSON.stringify(carolJoin.body));
      const carolMember = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(carol.userId)}`,
      );
      assert.equal(carolMember.body.join_authorised_via_users_server, alice.userId);

      // Carl, also on C, is in the space: C is in the room but cannot grant the join, so it asks A, which can.
      const carl = (await c.user('carl')) as Me;
      assert.equal((await join(carl, space, [a])).status, 200);
      // C is in the space already: the join reaches A through C's queue.
      await until('carl in the space on A', async () =>
        (await membershipOn(alice, space, carl.userId)) === 'join' ? true : undefined,
      );
      const carlJoined = await carl.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {});
      assert.equal(carlJoined.status, 200, JSON.stringify(carlJoined.body));
      assert.equal(await membershipOn(carl, roomId, carl.userId), 'join');
      await until('carl joined on A', async () =>
        (await membershipOn(alice, roomId, carl.userId)) === 'join' ? true : undefined,
      );
      const carlMember = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(carl.userId)}`,
      );
      assert.equal(carlMember.body.join_authorised_via_users_server, alice.userId);
      await doctorClean(c, roomId);

      // Bob joins the space; once C sees it, C can check him but cannot grant the join (nobody on C may invite).
      assert.equal((await join(bob, space, [a])).status, 200);
      await until('bob in the space on C', async () =>
        (await membershipOn(carol, space, bob.userId)) === 'join' ? true : undefined,
      );
      const make = `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(bob.userId)}`;
      const fromC = await fed(b, c, 'GET', make, { query: { ver: [VERSION] } });
      assert.equal(fromC.status, 400, JSON.stringify(fromC.body));
      assert.equal(fromC.body.errcode, 'M_UNABLE_TO_GRANT_JOIN');
      // A can: its template names Alice as the authorising user.
      const fromA = await fed(b, a, 'GET', make, { query: { ver: [VERSION] } });
      assert.equal(fromA.status, 200);
      assert.equal(
        (fromA.body.event as { content: JsonObject }).content.join_authorised_via_users_server,
        alice.userId,
      );

      // A local user of A outside the space is refused too; one in it joins, authorised by Alice.
      const ann = (await a.user('ann')) as Me;
      const annRefused = await ann.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {});
      assert.equal(annRefused.status, 403, JSON.stringify(annRefused.body));
      assert.equal((await ann.post(`/_matrix/client/v3/rooms/${enc(space)}/join`, {})).status, 200);
      const annJoined = await ann.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {});
      assert.equal(annJoined.status, 200, JSON.stringify(annJoined.body));
      const annMember = await alice.get(
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(ann.userId)}`,
      );
      assert.equal(annMember.body.join_authorised_via_users_server, alice.userId);

      // A room restricted to a room A is not in: A cannot tell whether Bob may join.
      const carolRoom = await carol.post('/_matrix/client/v3/createRoom', { room_version: VERSION });
      assert.equal(carolRoom.status, 200);
      const elsewhere = await create({
        preset: 'private_chat',
        initial_state: [
          {
            type: 'm.room.join_rules',
            state_key: '',
            content: {
              join_rule: 'restricted',
              allow: [{ type: 'm.room_membership', room_id: carolRoom.body.room_id as string }],
            },
          },
        ],
      });
      const unable = await fed(
        b,
        a,
        'GET',
        `/_matrix/federation/v1/make_join/${enc(elsewhere)}/${enc(bob.userId)}`,
        {
          query: { ver: [VERSION] },
        },
      );
      assert.equal(unable.status, 400, JSON.stringify(unable.body));
      assert.equal(unable.body.errcode, 'M_UNABLE_TO_AUTHORISE_JOIN');
      const unableJoin = await join(bob, elsewhere, [a]);
      assert.equal(unableJoin.status, 403, JSON.stringify(unableJoin.body));

      // B tries C first, moves on to A, and is in.
      const joined = await join(bob, roomId, [c, a]);
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      const members = await bob.get(`/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`);
      assert.ok(bob.userId in (members.body.joined as object), JSON.stringify(members.body));
      // The stored join carries the authorising server's signature.
      const row = await b.hs.storage.db
        .selectFrom('events')
        .select('json')
        .where('type', '=', 'm.room.member')
        .where('state_key', '=', bob.userId)
        .where('json', 'like', '%join_authorised_via_users_server%')
        .executeTakeFirst();
      const stored = JSON.parse(row?.json ?? '{}') as { signatures?: Record<string, unknown> };
      assert.ok(stored.signatures?.[a.serverName] && stored.signatures[b.serverName], row?.json);
      await until('the join on A', async () =>
        (await membershipOn(alice, roomId, bob.userId)) === 'join' ? true : undefined,
      );
    });

    it('answers the v1 send_join and send_leave in the old [200, {...}] shape', async () => {
      const roomId = await create({ preset: 'public_chat' });
      const version = findRoomVersion(VERSION);
      assert.ok(version);
      const dave = `@dave:${b.serverName}`;
      const handshake = async (membership: 'join' | 'leave') => {
        const made = await fed(
          b,
          a,
          'GET',
          `/_matrix/federation/v1/make_${membership}/${enc(roomId)}/${enc(dave)}`,
          {
            query: { ver: [VERSION] },
          },
        );
        assert.equal(made.status, 200, JSON.stringify(made.body));
        const ev = buildFromTemplate(
          { serverName: b.serverName, signingKey: b.hs.signingKey },
          version,
          roomId,
          dave,
          membership,
          made.body.event as JsonObject,
          { membership },
        );
        assert.ok(ev);
        return fed(
          b,
          a,
          'PUT',
          `/_matrix/federation/v1/send_${membership}/${enc(roomId)}/${enc(ev.eventId)}`,
          {
            body: ev.raw,
          },
        );
      };
      const joined = await handshake('join');
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      assert.ok(Array.isArray(joined.body));
      const [code, answer] = joined.body as unknown as [
        number,
        { state: JsonObject[]; auth_chain: JsonObject[] },
      ];
      assert.equal(code, 200);
      assert.ok(answer.state.some((e) => e.type === 'm.room.create'));
      assert.ok(answer.auth_chain.length > 0);
      assert.equal(await membershipOn(alice, roomId, dave), 'join');
      const left = await handshake('leave');
      assert.deepEqual(left.body, [200, {}]);
      assert.equal(await membershipOn(alice, roomId, dave), 'leave');
    });

    it('answers the third-party invite endpoints with a Matrix error', async () => {
      const roomId = await create({ preset: 'private_chat' });
      const exchange = await fed(
        b,
        a,
        'PUT',
        `/_matrix/federation/v1/exchange_third_party_invite/${enc(roomId)}`,
        {
          body: {
            type: 'm.room.member',
            room_id: roomId,
            sender: alice.userId,
            state_key: bob.userId,
            content: { membership: 'invite', third_party_invite: { display_name: 'b...@example.org' } },
          },
        },
      );
      assert.equal(exchange.status, 403);
      assert.equal(exchange.body.errcode, 'M_FORBIDDEN');
      assert.match(String(exchange.body.error), /third-party invites/);
      const onbind = await unsigned(a.federationUrl, 'PUT', '/_matrix/federation/v1/3pid/onbind', {
        address: 'bob@example.org',
        medium: 'email',
        mxid: `@bob:${a.serverName}`,
        invites: [],
      });
      assert.equal(onbind.status, 400);
      assert.equal(onbind.body.errcode, 'M_UNRECOGNIZED');
    });

    // Last: it stops A.
    it('rejects an invite here only when no resident server answers', async () => {
      const roomId = await create({ preset: 'private_chat' });
      const invited = await alice.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
        user_id: bob.userId,
      });
      assert.equal(invited.status, 200, JSON.stringify(invited.body));
      const { rooms: before, next } = await syncRooms(bob);
      assert.ok(before.invite?.[roomId]);
      await a.stop();
      const left = await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {});
      assert.equal(left.status, 200, JSON.stringify(left.body));
      const { rooms } = await syncRooms(bob, next);
      const events = (rooms.leave?.[roomId] as { timeline?: { events: JsonObject[] } } | undefined)?.timeline
        ?.events;
      assert.equal(events?.length, 1, JSON.stringify(rooms));
      assert.equal((await syncRooms(bob)).rooms.invite?.[roomId], undefined);
      await doctorClean(b, roomId);
    });
  });
}
