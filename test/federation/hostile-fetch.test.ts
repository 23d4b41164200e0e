/**
 * A hostile server (test/helpers/hostile-server.ts) joined to a room of Hearth A sends events that cite prev or auth
 * events A does not have, then lies when A asks for them: get_missing_events answers that are garbage, huge, never
 * come, or carry forged and foreign events; /state_ids answers naming events that do not exist or fail auth; /event
 * answers with another event than the one asked; /event_auth answers of garbage. Other hostile servers lie about
 * their keys (a wrong key, an expired key document). A answers every /send with a 200 and per-PDU results, alice
 * never sees what the lies carried, the current state stays, the honest peer's messages land (even while the hostile
 * server holds A's request), and the doctor finds A's database clean.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JsonObject } from '../../src/rooms/event.js';
import { generateSigningSeed, publicKeyBase64FromSeed, signJson } from '../../src/rooms/signing.js';
import { ENGINES } from '../helpers/engines.js';
import { HostileScene, until } from '../helpers/hostile-scene.js';
import { HostileServer } from '../helpers/hostile-server.js';

for (const engine of ENGINES) {
  describe(`${engine}: a hostile server's answers when asked for missing events`, () => {
    const s = new HostileScene();
    let stateBefore: Map<string, string>;

    before(async () => {
      await s.start(engine);
      stateBefore = await s.currentState();
    });
    after(() => s.close());

    const unharmed = async () => {
      s.hostile.script = {};
      assert.deepEqual(await s.currentState(), stateBefore);
      await s.honestLands();
    };

    /** `first` (never sent) and `second`, which cites it as its only prev event. */
    const gap = async (label: string) => {
      const first = await s.message(`${label}: unseen`);
      const second = await s.message(`${label}: after the gap`, {
        prev: [first.eventId],
        depth: (first.pdu.depth as number) + 1,
      });
      return { first, second };
    };

    it('refuses an event after a gap when get_missing_events answers garbage and /state_ids fails', async () => {
      const { first, second } = await gap('garbage');
      s.hostile.script = {
        missingEvents: () => ({ status: 200, raw: '{"events": [garbage' }),
        stateIds: () => ({ status: 500, raw: 'oops' }),
      };
      const res = await s.send([second.pdu]);
      assert.equal(res.status, 200);
      assert.equal(typeof res.pdus[second.eventId]?.error, 'string');
      assert.ok(s.hostile.requests.some((r) => r.includes('/get_missing_events/')));
      await s.invisible(first.eventId, second.eventId);
      await unharmed();
    });

    it('does not take lies from get_missing_events, /state_ids or /event', async () => {
      const { first, second } = await gap('lies');
      const other = await s.alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const otherRoom = other.body.room_id as string;
      const forgedFirst = structuredClone(first.pdu);
      (forgedFirst.signatures as Record<string, Record<string, string>>)[s.hostile.serverName] = {
        [s.hostile.keyId]: 'A'.repeat(86),
      };
      // Properly signed, citing this room's events, but naming another room.
      const foreign = s.hostile.build(
        {
          type: 'm.room.message',
          content: { msgtype: 'm.text', body: 'foreign' },
          sender: s.eve,
          room_id: otherRoom,
          prev_events: first.pdu.prev_events as string[],
          auth_events: first.pdu.auth_events as string[],
          depth: first.pdu.depth as number,
          origin_server_ts: Date.now(),
        },
        '12',
      );
      const decoy = await s.message('decoy');
      const head = await s.a.hs.writer.head(s.roomId);
      const stateIds = [...(head?.state.values() ?? [])].map((e) => e.eventId);
      s.hostile.script = {
        // The missing event with a forged signature, the same event claiming another room, and junk.
        missingEvents: () => ({ status: 200, body: { events: [forgedFirst, foreign.pdu, 'x', 7, null] } }),
        stateIds: () => ({ status: 200, body: { pdu_ids: stateIds, auth_chain_ids: [] } }),
        // Asked for `first`, it answers with another event.
        event: (id) =>
          id === first.eventId
            ? { status: 200, body: { origin: s.hostile.serverName, origin_server_ts: 0, pdus: [decoy.pdu] } }
            : { status: 404, body: { errcode: 'M_NOT_FOUND', error: 'no' } },
      };
      const res = await s.send([second.pdu]);
      assert.equal(res.status, 200);
      assert.equal(typeof res.pdus[second.eventId]?.error, 'string');
      assert.ok(s.hostile.requests.some((r) => r.includes(`/event/${encodeURIComponent(first.eventId)}`)));
      for (const id of [first.eventId, second.eventId, decoy.eventId, foreign.eventId])
        assert.equal(await s.row(id), undefined);
      await s.invisible(first.eventId, second.eventId, decoy.eventId, foreign.eventId);

      // /state_ids naming events that do not exist.
      const more = await gap('nonexistent state');
      s.hostile.script = {
        stateIds: () => ({
          status: 200,
          body: { pdu_ids: [...stateIds, `$${'B'.repeat(43)}`], auth_chain_ids: [`$${'C'.repeat(43)}`] },
        }),
      };
      const res2 = await s.send([more.second.pdu]);
      assert.equal(res2.status, 200);
      assert.ok(more.second.eventId in res2.pdus);
      await s.invisible(more.first.eventId);
      stateBefore = await s.currentState();
      await unharmed();
    });

    it('keeps an event that /state_ids names but that fails auth out of the state', async () => {
      const { first, second } = await gap('forged power');
      const head = await s.a.hs.writer.head(s.roomId);
      const state = [...(head?.state.values() ?? [])];
      const pl = state.find((e) => e.pdu.type === 'm.room.power_levels');
      assert.ok(pl);
      const grab = await s.build({
        type: 'm.room.power_levels',
        state_key: '',
        content: { ...pl.pdu.content, users: { [s.eve]: 100 } },
      });
      const ids = state.map((e) => (e.eventId === pl.eventId ? grab.eventId : e.eventId));
      s.hostile.script = {
        stateIds: () => ({ status: 200, body: { pdu_ids: ids, auth_chain_ids: [] } }),
      };
      const res = await s.send([second.pdu]);
      assert.equal(res.status, 200);
      assert.ok(second.eventId in res.pdus);
      const row = await s.row(grab.eventId);
      assert.ok(row?.rejected_reason, 'the forged power levels are stored rejected');
      await s.invisible(grab.eventId, first.eventId);
      const pls = await s.alice.get(`/_matrix/client/v3/rooms/${s.r}/state/m.room.power_levels/`);
      assert.equal((pls.body.users as Record<string, number>)[s.eve], undefined);
      await unharmed();
    });

    it('refuses an event whose auth events /event_auth answers with garbage', async () => {
      const ev = await s.build(
        { type: 'm.room.message', content: { msgtype: 'm.text', body: 'odd auth' } },
        { auth: [`$${'A'.repeat(43)}`] },
      );
      // Besides junk, a well-signed event of a room A does not know, citing this room's events.
      const stray = s.hostile.build(
        {
          type: 'm.room.message',
          content: { msgtype: 'm.text', body: 'stray' },
          sender: s.eve,
          room_id: `!${'D'.repeat(43)}`,
          prev_events: ev.pdu.prev_events as string[],
          auth_events: (ev.pdu.auth_events as string[]).slice(1),
          depth: 3,
          origin_server_ts: Date.now(),
        },
        '12',
      );
      s.hostile.script = {
        eventAuth: () => ({ status: 200, body: { auth_chain: [1, 'x', { type: 'm' }, stray.pdu] } }),
      };
      const res = await s.send([ev.pdu]);
      assert.equal(res.status, 200);
      assert.equal(typeof res.pdus[ev.eventId]?.error, 'string');
      assert.equal(await s.row(stray.eventId), undefined);
      await s.invisible(ev.eventId);
      await unharmed();
    });

    it('survives a huge get_missing_events answer', async () => {
      const { first, second } = await gap('huge');
      const junk: unknown[] = Array.from({ length: 20_000 }, (_, i) => ({
        type: 'junk',
        n: i,
        pad: 'x'.repeat(200),
      }));
      const chain: JsonObject[] = [];
      let prev = (first.pdu.prev_events as string[]).slice();
      for (let i = 0; i < 60; i++) {
        const ev = await s.message(`flood ${i}`, { prev, depth: 1000 + i });
        chain.push(ev.pdu);
        prev = [ev.eventId];
      }
      s.hostile.script = { missingEvents: () => ({ status: 200, body: { events: [...junk, ...chain] } }) };
      const started = Date.now();
      const res = await s.send([second.pdu]);
      assert.equal(res.status, 200);
      assert.ok(second.eventId in res.pdus);
      assert.ok(Date.now() - started < 20_000, 'answered in reasonable time');
      const seen = await s.seenByAlice();
      const flood = seen.messages.filter((id) => chain.some((c) => HostileServer.eventIdOf(c, '12') === id));
      assert.ok(flood.length <= 20, `at most the 20 events asked for were taken, not ${flood.length}`);
      stateBefore = await s.currentState();
      await unharmed();
    });

    it('lets the honest peer through while the hostile server holds get_missing_events, then answers it', async () => {
      const { first, second } = await gap('hang');
      s.hostile.script = { missingEvents: () => ({ hang: true }) };
      const pending = s.send([second.pdu]);
      await until('the held request', async () => (s.hostile.hanging > 0 ? true : undefined));
      await s.honestLands();
      assert.equal(s.hostile.releaseHanging(), 1);
      const res = await pending;
      assert.equal(res.status, 200);
      assert.ok(second.eventId in res.pdus);
      await s.invisible(first.eventId);
      stateBefore = await s.currentState();
      await unharmed();
    });

    it('does not fetch the state at hundreds of unknown prev events of one event', async () => {
      const head = await s.a.hs.writer.head(s.roomId);
      const stateIds = [...(head?.state.values() ?? [])].map((e) => e.eventId);
      const prevs: string[] = [];
      for (let i = 0; i < 300; i++) prevs.push((await s.message(`unseen ${i}`)).eventId);
      const ev = await s.message('many parents', { prev: prevs, depth: 10_000 });
      s.hostile.script = {
        stateIds: () => ({ status: 200, body: { pdu_ids: stateIds, auth_chain_ids: [] } }),
      };
      const before = s.hostile.requests.length;
      const started = Date.now();
      const res = await s.send([ev.pdu]);
      assert.equal(res.status, 200);
      assert.match(String(res.pdus[ev.eventId]?.error), /Too many unknown prev events/);
      const asked = s.hostile.requests.length - before;
      assert.ok(asked <= 50, `A made ${asked} requests for one event`);
      assert.ok(Date.now() - started < 20_000);
      stateBefore = await s.currentState();
      await unharmed();
    });

    it("refuses PDUs of other servers' users whose key documents lie or have expired", async () => {
      const liar = new HostileServer();
      const stale = new HostileServer();
      await Promise.all([liar.start(), stale.start()]);
      try {
        const wrong = generateSigningSeed();
        liar.script = {
          keys: () => ({
            status: 200,
            body: signJson(
              {
                server_name: liar.serverName,
                valid_until_ts: Date.now() + 86_400_000,
                verify_keys: { [liar.keyId]: { key: publicKeyBase64FromSeed(wrong) } },
              },
              liar.serverName,
              liar.keyId,
              wrong,
            ),
          }),
        };
        stale.script = {
          keys: () => ({ status: 200, body: stale.keyDocument({ valid_until_ts: Date.now() - 3_600_000 }) }),
        };
        // Each event is signed by its sender's server only, and relayed by the hostile one.
        const signed = (by: HostileServer) =>
          s.message(`from ${by.serverName}`, { sender: `@z:${by.serverName}`, signer: by.signer });
        const fromLiar = await signed(liar);
        const fromStale = await signed(stale);
        const res = await s.send([fromLiar.pdu, fromStale.pdu]);
        assert.equal(res.status, 200);
        assert.match(
          String(res.pdus[fromLiar.eventId]?.error),
          new RegExp(`signature of ${liar.serverName}`),
        );
        assert.match(
          String(res.pdus[fromStale.eventId]?.error),
          new RegExp(`signature of ${stale.serverName}`),
        );
        assert.ok(liar.requests.includes('GET /_matrix/key/v2/server'));
        assert.ok(stale.requests.includes('GET /_matrix/key/v2/server'));
        // A request signed with an expired key is refused too.
        const asked = await stale.request(
          s.a.serverName,
          'GET',
          `/_matrix/federation/v1/state_ids/${s.r}?event_id=x`,
        );
        assert.equal(asked.status, 401);
        await s.invisible(fromLiar.eventId, fromStale.eventId);
      } finally {
        await Promise.all([liar.stop(), stale.stop()]);
      }
      await unharmed();
    });

    it('leaves the database clean for the doctor', async () => {
      await s.doctorClean();
    });
  });
}
