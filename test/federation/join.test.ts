/**
 * Two Hearths on loopback: a user of B joins a room of A over federation (make_join, send_join v2, the state and
 * auth chain checked and stored by B in one transaction), then messages go both ways through the outbound queue and
 * the ingestion path, and both doctors find nothing wrong. Also the resident side's refusals (a server not in the
 * room cannot read it; an incompatible room version).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runDoctor } from '../../src/integrity/doctor.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import type { Client } from '../helpers/server.js';
import { until } from '../helpers/until.js';

type Me = Client & { userId: string };

async function timeline(c: Me, roomId: string): Promise<{ event_id: string; content: { body?: string } }[]> {
  const res = await c.get(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=50`);
  return res.status === 200 ? (res.body.chunk as { event_id: string; content: { body?: string } }[]) : [];
}

async function doctorClean(s: FederatedServer, roomId: string): Promise<void> {
  const report = await runDoctor(s.hs.storage, {
    roomId,
    exclusive: (id, fn) => s.hs.writer.runExclusive(id, fn),
  });
  assert.deepEqual(report.problems, []);
}

for (const engine of ENGINES) {
  for (const version of ['10', '12']) {
    describe(`${engine}: joining a room over federation (room version ${version})`, () => {
      let a: FederatedServer;
      let b: FederatedServer;
      let alice: Me;
      let bob: Me;

      before(async () => {
        a = await startFederatedServer(engine);
        b = await startFederatedServer(engine);
        alice = await a.user('alice');
        bob = await b.user('bob');
      });
      after(async () => {
        await Promise.allSettled([a.close(), b.close()]);
      });

      it('joins, then messages flow both ways', async () => {
        const created = await alice.post('/_matrix/client/v3/createRoom', {
          preset: 'public_chat',
          room_version: version,
          name: 'over there',
        });
        assert.equal(created.status, 200);
        const roomId = created.body.room_id as string;
        const r = encodeURIComponent(roomId);
        await alice.put(`/_matrix/client/v3/rooms/${r}/send/m.room.message/a0`, {
          msgtype: 'm.text',
          body: 'before',
        });

        const joined = await bob.post(
          `/_matrix/client/v3/join/${r}?server_name=${encodeURIComponent(a.serverName)}`,
        );
        assert.equal(joined.status, 200, JSON.stringify(joined.body));
        assert.equal(joined.body.room_id, roomId);

        // B has the room's state: its name and both members.
        const name = await bob.get(`/_matrix/client/v3/rooms/${r}/state/m.room.name/`);
        assert.equal(name.body.name, 'over there');
        const members = await bob.get(`/_matrix/client/v3/rooms/${r}/joined_members`);
        assert.deepEqual(
          Object.keys(members.body.joined as object).sort(),
          [alice.userId, bob.userId].sort(),
        );
        const roomRow = await b.hs.storage.db
          .selectFrom('rooms')
          .select('room_version')
          .where('room_id', '=', roomId)
          .executeTakeFirst();
        assert.equal(roomRow?.room_version, version);

        // A accepted the join through its writer.
        await until('the join on A', async () => {
          const m = await alice.get(`/_matrix/client/v3/rooms/${r}/joined_members`);
          return bob.userId in (m.body.joined as object) ? true : undefined;
        });

        // A's message reaches B through A's outbound queue and B's ingestion.
        const sent = await alice.put(`/_matrix/client/v3/rooms/${r}/send/m.room.message/a1`, {
          msgtype: 'm.text',
          body: 'hello from A',
        });
        assert.equal(sent.status, 200);
        await until('A message on B', async () =>
          (await timeline(bob, roomId)).some((e) => e.event_id === sent.body.event_id) ? true : undefined,
        );

        // And B's reply reaches A.
        const reply = await bob.put(`/_matrix/client/v3/rooms/${r}/send/m.room.message/b1`, {
          msgtype: 'm.text',
          body: 'hello from B',
        });
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
        await until('B message on A', async () =>
          (await timeline(alice, roomId)).some((e) => e.event_id === reply.body.event_id) ? true : undefined,
        );

        // B's sync shows the room joined with A's message.
        const sync = await bob.get('/_matrix/client/v3/sync');
        const room = (
          sync.body.rooms as { join: Record<string, { timeline: { events: { event_id: string }[] } }> }
        ).join[roomId];
        assert.ok(room?.timeline.events.some((e) => e.event_id === sent.body.event_id));

        await doctorClean(a, roomId);
        await doctorClean(b, roomId);

        // Bob leaves through B's writer; A sees the leave.
        const left = await bob.post(`/_matrix/client/v3/rooms/${r}/leave`, {});
        assert.equal(left.status, 200);
        await until('the leave on A', async () => {
          const m = await alice.get(`/_matrix/client/v3/rooms/${r}/joined_members`);
          return bob.userId in (m.body.joined as object) ? undefined : true;
        });
      });

      it('invites a user of the other server, who sees the invite and joins through the inviter', async () => {
        const created = await alice.post('/_matrix/client/v3/createRoom', {
          preset: 'private_chat',
          room_version: version,
          name: 'secret',
        });
        assert.equal(created.status, 200);
        const roomId = created.body.room_id as string;
        const r = encodeURIComponent(roomId);
        const invited = await alice.post(`/_matrix/client/v3/rooms/${r}/invite`, { user_id: bob.userId });
        assert.equal(invited.status, 200, JSON.stringify(invited.body));
        const member = await alice.get(
          `/_matrix/client/v3/rooms/${r}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
        );
        assert.equal(member.body.membership, 'invite');

        const sync = await bob.get('/_matrix/client/v3/sync');
        const invite = (
          sync.body.rooms as {
            invite: Record<
              string,
              { invite_state: { events: { type: string; content: { name?: string } }[] } }
            >;
          }
        ).invite[roomId];
        assert.ok(invite, JSON.stringify(sync.body.rooms));
        assert.equal(
          invite.invite_state.events.find((e) => e.type === 'm.room.name')?.content.name,
          'secret',
        );
        await doctorClean(b, roomId);

        const joined = await bob.post(`/_matrix/client/v3/rooms/${r}/join`, {});
        assert.equal(joined.status, 200, JSON.stringify(joined.body));
        const members = await bob.get(`/_matrix/client/v3/rooms/${r}/joined_members`);
        assert.ok(bob.userId in (members.body.joined as object));
        const after = await bob.get('/_matrix/client/v3/sync');
        assert.ok((after.body.rooms as { join: Record<string, unknown> }).join[roomId]);
        await doctorClean(a, roomId);
        await doctorClean(b, roomId);
      });

      it('refuses to serve a room to a server that is not in it', async () => {
        const created = await alice.post('/_matrix/client/v3/createRoom', {
          preset: 'private_chat',
          room_version: version,
        });
        const roomId = created.body.room_id as string;
        const res = await b.hs.federation.client
          .get(a.serverName, `/_matrix/federation/v1/state_ids/${encodeURIComponent(roomId)}`, {
            query: { event_id: '$x' },
          })
          .catch((err: { status?: number; errcode?: string }) => err);
        assert.equal((res as { status?: number }).status, 403);
        const join = await bob.post(
          `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${encodeURIComponent(a.serverName)}`,
        );
        assert.equal(join.status, 403, JSON.stringify(join.body));
        const make = await b.hs.federation.client
          .get(
            a.serverName,
            `/_matrix/federation/v1/make_join/${encodeURIComponent(roomId)}/${encodeURIComponent(bob.userId)}`,
            {
              query: { ver: ['1'] },
            },
          )
          .catch((err: { status?: number; errcode?: string }) => err);
        assert.equal((make as { errcode?: string }).errcode, 'M_INCOMPATIBLE_ROOM_VERSION');
      });
    });
  }
}
