/**
 * Three Hearths in one room (issue 12's multi-server scenario): a room created on A with an alias, joined from B
 * and C through the alias resolved over federation; messages from each server reach the other two; state and
 * power-level changes, refusals, leave and rejoin, an invite to a second user of C, a ban by B's user, typing and a
 * read receipt; then A and B send concurrently (forks, a conflicting topic) and all three converge: the same events,
 * the same current state, one forward extremity after one more message. Every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FederationError } from '../../src/federation/client.js';
import { runDoctor } from '../../src/integrity/doctor.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import {
  enc,
  eventIdsSince,
  forwardExtremities,
  joinedMembers,
  stateContent,
  stateIds,
  SyncView,
  until,
  type FedUser,
} from '../helpers/federated-room.js';

async function sendText(user: FedUser, roomId: string, body: string): Promise<string> {
  const res = await user.put(
    `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${enc(body)}-${Date.now()}`,
    { msgtype: 'm.text', body },
  );
  assert.equal(res.status, 200, `${user.userId} sending ${body}: ${JSON.stringify(res.body)}`);
  return res.body.event_id as string;
}

async function putState(
  user: FedUser,
  roomId: string,
  type: string,
  content: object,
  stateKey = '',
): Promise<{ status: number; eventId?: string; errcode?: string }> {
  const res = await user.put(
    `/_matrix/client/v3/rooms/${enc(roomId)}/state/${type}/${enc(stateKey)}`,
    content,
  );
  return { status: res.status, eventId: res.body.event_id as string, errcode: res.body.errcode as string };
}

/** Waits until the state event has the content on every user's server. */
async function everywhere(users: FedUser[], roomId: string, type: string, key: string, want: object) {
  for (const u of users)
    await until(`${type} ${JSON.stringify(want)} on ${u.userId}'s server`, async () => {
      const c = await stateContent(u, roomId, type, key);
      return c && Object.entries(want).every(([k, v]) => JSON.stringify(c[k]) === JSON.stringify(v))
        ? true
        : undefined;
    });
}

/** Until the returned heal is called, every outbound federation request of `from` to `to` fails unanswered. */
function cutOff(from: FederatedServer, to: FederatedServer): () => void {
  const client = from.hs.federation.client;
  const original = client.request.bind(client);
  client.request = (destination, ...rest) =>
    destination === to.serverName
      ? Promise.reject(new FederationError(`partitioned from ${destination}`))
      : original(destination, ...rest);
  return () => {
    client.request = original;
    // The sender backs off after the failures: as when the other server is heard from again, resume now.
    from.hs.federation.sender.remoteIsUp(to.serverName);
  };
}

for (const engine of ENGINES) {
  describe(`${engine}: one room on three Hearths`, () => {
    let a: FederatedServer, b: FederatedServer, c: FederatedServer;
    let alice: FedUser, bob: FedUser, carol: FedUser, carol2: FedUser;
    let views: SyncView[];
    let roomId: string;
    let alias: string;
    let power: { users: Record<string, number>; ban: number };

    before(async () => {
      [a, b, c] = await Promise.all([
        startFederatedServer(engine),
        startFederatedServer(engine),
        startFederatedServer(engine),
      ]);
      [alice, bob, carol, carol2] = await Promise.all([
        a.user('alice'),
        b.user('bob'),
        c.user('carol'),
        c.user('carol2'),
      ]);
      views = [alice, bob, carol].map((u) => new SyncView(u));
    });
    after(async () => {
      await Promise.allSettled([a.close(), b.close(), c.close()]);
    });

    it('B and C join through the alias, resolved over federation', async () => {
      const created = await alice.post('/_matrix/client/v3/createRoom', {
        preset: 'public_chat',
        room_alias_name: 'town',
        name: 'Town square',
      });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      roomId = created.body.room_id as string;
      alias = `#town:${a.serverName}`;
      // C's client asks C, which asks A.
      const resolved = await carol.get(`/_matrix/client/v3/directory/room/${enc(alias)}`);
      assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
      assert.equal(resolved.body.room_id, roomId);
      assert.deepEqual(resolved.body.servers, [a.serverName]);
      const unknown = await carol.get(`/_matrix/client/v3/directory/room/${enc(`#nowhere:${a.serverName}`)}`);
      assert.equal(unknown.status, 404);
      const noJoin = await carol.post(`/_matrix/client/v3/join/${enc(`#nowhere:${a.serverName}`)}`);
      assert.equal(noJoin.status, 404);
      assert.equal(noJoin.body.errcode, 'M_NOT_FOUND');
      for (const u of [bob, carol]) {
        const joined = await u.post(`/_matrix/client/v3/join/${enc(alias)}`);
        assert.equal(joined.status, 200, `${u.userId}: ${JSON.stringify(joined.body)}`);
        assert.equal(joined.body.room_id, roomId);
      }
      const all = [alice.userId, bob.userId, carol.userId].sort();
      for (const u of [alice, bob, carol])
        await until(`three members on ${u.userId}'s server`, async () =>
          JSON.stringify(await joinedMembers(u, roomId)) === JSON.stringify(all) ? true : undefined,
        );
    });

    it("a message from each server reaches the other two servers' /sync", async () => {
      const sent = [
        await sendText(alice, roomId, 'hello from A'),
        await sendText(bob, roomId, 'hello from B'),
        await sendText(carol, roomId, 'hello from C'),
      ];
      for (const v of views) await v.sees(roomId, sent, 'the three messages');
    });

    it("state and power levels: B's moderator changes the topic, C's user without power is refused", async () => {
      assert.equal((await putState(alice, roomId, 'm.room.name', { name: 'Town hall' })).status, 200);
      assert.equal((await putState(alice, roomId, 'm.room.topic', { topic: 'set by A' })).status, 200);
      const pl = await stateContent(alice, roomId, 'm.room.power_levels');
      assert.ok(pl);
      power = { ...(pl as { users: Record<string, number> }), ban: 100 };
      power.users = { ...power.users, [bob.userId]: 50 };
      assert.equal((await putState(alice, roomId, 'm.room.power_levels', power)).status, 200);
      await everywhere([bob, carol], roomId, 'm.room.name', '', { name: 'Town hall' });
      await everywhere([bob, carol], roomId, 'm.room.power_levels', '', { users: power.users });

      const byBob = await putState(bob, roomId, 'm.room.topic', { topic: 'set by B' });
      assert.equal(byBob.status, 200, JSON.stringify(byBob));
      await everywhere([alice, carol], roomId, 'm.room.topic', '', { topic: 'set by B' });

      const byCarol = await putState(carol, roomId, 'm.room.topic', { topic: 'set by C' });
      assert.equal(byCarol.status, 403);
      assert.equal(byCarol.errcode, 'M_FORBIDDEN');
      assert.equal((await stateContent(alice, roomId, 'm.room.topic'))?.topic, 'set by B');
    });

    it("C's user leaves and rejoins", async () => {
      const left = await carol.post(`/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {});
      assert.equal(left.status, 200, JSON.stringify(left.body));
      for (const u of [alice, bob])
        await until(`the leave on ${u.userId}'s server`, async () =>
          (await joinedMembers(u, roomId)).includes(carol.userId) ? undefined : true,
        );
      await until("the room in the leave section of C's /sync", async () => {
        await views[2]!.poll();
        return views[2]!.left.has(roomId) ? true : undefined;
      });
      const whileAway = await sendText(alice, roomId, 'said while C was away');

      const back = await carol.post(`/_matrix/client/v3/join/${enc(alias)}`);
      assert.equal(back.status, 200, JSON.stringify(back.body));
      for (const u of [alice, bob])
        await until(`the rejoin on ${u.userId}'s server`, async () =>
          (await joinedMembers(u, roomId)).includes(carol.userId) ? true : undefined,
        );
      // C has the current state again (B's topic) and receives what is sent now.
      assert.equal((await stateContent(carol, roomId, 'm.room.topic'))?.topic, 'set by B');
      const afterRejoin = await sendText(bob, roomId, 'welcome back');
      await views[2]!.sees(roomId, [afterRejoin], 'the message after the rejoin');
      assert.equal(views[2]!.left.has(roomId), false);
      // What was said while C was away is not in C's /sync (it was not in the room).
      assert.equal(views[2]!.timeline.get(roomId)?.has(whileAway), false);
    });

    it("A's user invites a second user of C, who accepts", async () => {
      const invited = await alice.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
        user_id: carol2.userId,
      });
      assert.equal(invited.status, 200, JSON.stringify(invited.body));
      const view = new SyncView(carol2);
      await until('the invite in /sync of C', async () => {
        await view.poll();
        return view.invites.has(roomId) ? true : undefined;
      });
      const joined = await carol2.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {});
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      await everywhere([alice, bob, carol], roomId, 'm.room.member', carol2.userId, { membership: 'join' });
    });

    it("B's user, given ban power, bans C's second user, and C sees the ban", async () => {
      const early = await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/ban`, { user_id: carol2.userId });
      assert.equal(early.status, 403, JSON.stringify(early.body));
      power = { ...power, ban: 50 };
      assert.equal((await putState(alice, roomId, 'm.room.power_levels', power)).status, 200);
      await everywhere([bob], roomId, 'm.room.power_levels', '', { ban: 50 });
      const ban = await bob.post(`/_matrix/client/v3/rooms/${enc(roomId)}/ban`, {
        user_id: carol2.userId,
        reason: 'testing',
      });
      assert.equal(ban.status, 200, JSON.stringify(ban.body));
      await everywhere([alice, carol, carol2], roomId, 'm.room.member', carol2.userId, {
        membership: 'ban',
      });
      const rejoin = await carol2.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {});
      assert.equal(rejoin.status, 403, JSON.stringify(rejoin.body));
    });

    it('typing and a read receipt from C reach A and B', async () => {
      const target = await sendText(alice, roomId, 'read me');
      await views[2]!.sees(roomId, [target], 'the message to acknowledge');
      const typing = await carol.put(`/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(carol.userId)}`, {
        typing: true,
        timeout: 30_000,
      });
      assert.equal(typing.status, 200, JSON.stringify(typing.body));
      const receipt = await carol.post(
        `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(target)}`,
      );
      assert.equal(receipt.status, 200, JSON.stringify(receipt.body));
      for (const v of views.slice(0, 2)) {
        await v.seesEphemeral(roomId, 'm.typing', (c) =>
          ((c.user_ids as string[] | undefined) ?? []).includes(carol.userId),
        );
        await v.seesEphemeral(roomId, 'm.receipt', (c) => {
          const read = (c[target] as { 'm.read'?: Record<string, unknown> } | undefined)?.['m.read'];
          return read !== undefined && carol.userId in read;
        });
      }
    });

    it('A and B send concurrently; the three servers converge', async (t) => {
      const marker = await sendText(carol, roomId, 'before the storm');
      for (const v of views) await v.sees(roomId, [marker], 'the marker');
      const burst = (u: FedUser, tag: string) =>
        Promise.all([
          ...Array.from({ length: 20 }, (_, i) => sendText(u, roomId, `${tag} ${i}`)),
          putState(u, roomId, 'm.room.topic', { topic: `concurrent ${tag}` }).then((r) => {
            assert.equal(r.status, 200, JSON.stringify(r));
            return r.eventId as string;
          }),
        ]);
      const [fromA, fromB] = await Promise.all([burst(alice, 'A'), burst(bob, 'B')]);
      const sent = [...fromA, ...fromB];

      const users = [alice, bob, carol];
      const agreed = await until(
        'the same events and state on A, B and C',
        async () => {
          const events = await Promise.all(users.map((u) => eventIdsSince(u, roomId, marker)));
          const states = await Promise.all(users.map((u) => stateIds(u, roomId)));
          const same = (xs: string[][]) => xs.every((x) => JSON.stringify(x) === JSON.stringify(xs[0]));
          if (!sent.every((id) => events[0]!.includes(id))) return undefined;
          return same(events) && same(states) ? { events: events[0]!, state: states[0]! } : undefined;
        },
        40_000,
      );
      assert.equal(agreed.events.length, sent.length + 1);
      const topic = await stateContent(alice, roomId, 'm.room.topic');
      assert.match(String(topic?.topic), /^concurrent [AB]$/);

      // The room forked: on each server some event is the prev event of two of the concurrent events (both
      // servers built on it), and wherever the branches met the event after them merged them.
      for (const s of [a, b]) {
        const edges = await s.hs.storage.db
          .selectFrom('event_edges as g')
          .innerJoin('events as e', 'e.event_nid', 'g.event_nid')
          .select(['e.event_id', 'g.prev_event_id'])
          .where('e.event_id', 'in', sent)
          .execute();
        const children = new Map<string, number>();
        for (const g of edges) children.set(g.prev_event_id, (children.get(g.prev_event_id) ?? 0) + 1);
        const forks = [...children.values()].filter((n) => n > 1).length;
        const merges = edges.length - new Set(edges.map((g) => g.event_id)).size;
        t.diagnostic(`${s === a ? 'A' : 'B'}: ${forks} fork points, ${merges} extra prev edges (merges)`);
        assert.ok(forks > 0, 'the concurrent sends forked the room');
      }

      const last = await sendText(carol, roomId, 'after the storm');
      for (const s of [a, b, c])
        await until(`one forward extremity on ${s.serverName}`, async () => {
          const ext = await forwardExtremities(s, roomId);
          return ext.length === 1 && ext[0] === last ? true : undefined;
        });
    });

    it('a partition between A and B: a demotion on A and a topic by the demoted user on B resolve alike everywhere', async () => {
      const heal = [cutOff(a, b), cutOff(b, a)];
      try {
        // A demotes B's user while B, not knowing it yet, lets that user change the topic.
        power = { ...power, users: { ...power.users, [bob.userId]: 0 } };
        const demoted = await putState(alice, roomId, 'm.room.power_levels', power);
        assert.equal(demoted.status, 200, JSON.stringify(demoted));
        const byAlice = await putState(alice, roomId, 'm.room.topic', { topic: 'partition A' });
        assert.equal(byAlice.status, 200, JSON.stringify(byAlice));
        const byBob = await putState(bob, roomId, 'm.room.topic', { topic: 'partition B' });
        assert.equal(byBob.status, 200, JSON.stringify(byBob));
        assert.equal((await stateContent(bob, roomId, 'm.room.topic'))?.topic, 'partition B');
        // C hears both sides and resolves them: the demotion wins, the demoted user's topic does not apply.
        await everywhere([carol], roomId, 'm.room.power_levels', '', { users: power.users });
        await everywhere([carol], roomId, 'm.room.topic', '', { topic: 'partition A' });
        const onB = (await stateContent(bob, roomId, 'm.room.power_levels')) as {
          users: Record<string, number>;
        };
        assert.equal(onB.users[bob.userId], 50, 'B has not heard of the demotion during the partition');
      } finally {
        for (const h of heal) h();
      }
      // After the partition, B's next message merges the branches; every server holds the same state.
      await everywhere([bob], roomId, 'm.room.topic', '', { topic: 'partition A' });
      const merged = await sendText(bob, roomId, 'after the partition');
      for (const v of views) await v.sees(roomId, [merged], 'the merging message');
      const users = [alice, bob, carol];
      await until('the same state on A, B and C', async () => {
        const states = await Promise.all(users.map((u) => stateIds(u, roomId)));
        return states.every((x) => JSON.stringify(x) === JSON.stringify(states[0])) ? true : undefined;
      });
      const refused = await putState(bob, roomId, 'm.room.topic', { topic: 'again from B' });
      assert.equal(refused.status, 403, JSON.stringify(refused));
    });

    it("every server's doctor finds the room consistent", async () => {
      for (const s of [a, b, c]) {
        const report = await runDoctor(s.hs.storage, {
          roomId,
          exclusive: (id, fn) => s.hs.writer.runExclusive(id, fn),
        });
        assert.deepEqual(report.problems, [], s.serverName);
      }
    });
  });
}
