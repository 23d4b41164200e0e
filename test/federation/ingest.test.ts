/**
 * Remote events through the room writer (federation/ingest.ts → input/remote-events.ts), with a scripted remote
 * server ("remote.test": its key and its answers to get_missing_events are the test's): a join is accepted, a fork
 * resolves by state resolution and merges, an event its auth events do not allow is rejected and invisible, a
 * soft-failed event stays out of the timeline, an unknown prev event is fetched, bad signatures are refused and a
 * content hash mismatch stores the event redacted. The doctor finds nothing wrong afterwards.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ingestRemotePdus, type IngestDeps } from '../../src/federation/ingest.js';
import { authEventTypesFor } from '../../src/rooms/auth/auth-events.js';
import { buildEvent } from '../../src/rooms/build.js';
import type { JsonObject, Pdu } from '../../src/rooms/event.js';
import { publicKeyBase64FromSeed, generateSigningSeed } from '../../src/rooms/signing.js';
import { getEventRowById } from '../../src/storage/events.js';
import { stateKey } from '../../src/storage/state.js';
import { runDoctor } from '../../src/integrity/doctor.js';
import { loadRoomHead } from '../../src/input/room-head.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const REMOTE = 'remote.test';
const SEED = generateSigningSeed();
const KEY_ID = 'ed25519:r1';
const BOB = `@bob:${REMOTE}`;

type Me = Client & { userId: string };

interface Built {
  eventId: string;
  pdu: JsonObject;
}

for (const engine of ENGINES) {
  for (const version of ['10', '12']) {
    describe(`${engine}: remote events in room version ${version}`, () => {
      let server: TestServer;
      let alice: Me;
      let missing: JsonObject[] = [];
      /** The scripted remote's answers to GET requests, by path (query included). */
      let gets = new Map<string, unknown>();
      let deps: IngestDeps;

      before(async () => {
        server = await startTestServer(engine);
        alice = await server.user('alice');
        const hs = server.hs;
        deps = {
          storage: hs.storage,
          writer: hs.writer,
          keyRing: {
            getVerifyKey: async (s, k, ts) =>
              s === REMOTE
                ? k === KEY_ID
                  ? publicKeyBase64FromSeed(SEED)
                  : null
                : hs.federation.keyRing.getVerifyKey(s, k, ts),
          },
          client: {
            get: async (_dest, path, opts) => {
              const q = opts?.query?.event_id;
              const key = q === undefined ? path : `${path}?event_id=${String(q)}`;
              if (!gets.has(key)) throw new Error(`unexpected GET ${key}`);
              return { status: 200, headers: {}, body: gets.get(key) };
            },
            post: async (_dest, path) => {
              assert.match(path, /get_missing_events/);
              return { status: 200, headers: {}, body: { events: missing } };
            },
          },
        };
      });
      after(() => server.close());

      const newRoom = async (): Promise<string> => {
        const res = await alice.post('/_matrix/client/v3/createRoom', {
          preset: 'public_chat',
          room_version: version,
        });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return res.body.room_id as string;
      };

      /** A remote event built over the room's current state (or over `prev`), signed by remote.test. */
      const remote = async (
        roomId: string,
        t: { type: string; content: JsonObject; state_key?: string; sender?: string },
        opts: { prev?: string[]; ts?: number; auth?: string[]; depth?: number } = {},
      ): Promise<Built> => {
        const head = await server.hs.writer.head(roomId);
        assert.ok(head);
        const sender = t.sender ?? BOB;
        const prev = opts.prev ?? head.extremities.map((e) => e.eventId);
        let depth = 0;
        for (const p of prev) {
          const row = await getEventRowById(server.hs.storage.db, p);
          depth = Math.max(depth, Number(row?.depth ?? 0));
        }
        const auth =
          opts.auth ??
          authEventTypesFor({ ...t, sender }, version)
            .map(([ty, k]) => head.state.get(stateKey(ty, k))?.eventId)
            .filter((x): x is string => x !== undefined);
        const built = buildEvent(
          {
            ...t,
            sender,
            room_id: roomId,
            prev_events: prev,
            auth_events: auth,
            depth: opts.depth ?? depth + 1,
            origin_server_ts: opts.ts ?? Date.now(),
          },
          { roomVersion: version, serverName: REMOTE, keyId: KEY_ID, seed: SEED },
        );
        return { eventId: built.eventId, pdu: built.pdu as unknown as JsonObject };
      };

      const ingest = (...events: Built[]) =>
        ingestRemotePdus(
          deps,
          REMOTE,
          events.map((e) => e.pdu),
        );

      const bobJoins = async (roomId: string): Promise<Built> => {
        const join = await remote(roomId, {
          type: 'm.room.member',
          state_key: BOB,
          content: { membership: 'join' },
        });
        assert.deepEqual(await ingest(join), { [join.eventId]: {} });
        return join;
      };

      const timelineIds = async (roomId: string): Promise<string[]> => {
        const res = await alice.get(
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100`,
        );
        assert.equal(res.status, 200);
        return (res.body.chunk as { event_id: string }[]).map((e) => e.event_id);
      };

      const doctorClean = async (roomId: string) => {
        const report = await runDoctor(server.hs.storage, {
          roomId,
          exclusive: (id, fn) => server.hs.writer.runExclusive(id, fn),
        });
        assert.deepEqual(report.problems, []);
      };

      it('accepts a join and a message, which reach the timeline and the current state', async () => {
        const roomId = await newRoom();
        const join = await bobJoins(roomId);
        const msg = await remote(roomId, {
          type: 'm.room.message',
          content: { body: 'hi', msgtype: 'm.text' },
        });
        assert.deepEqual(await ingest(msg), { [msg.eventId]: {} });
        const ids = await timelineIds(roomId);
        assert.equal(ids[0], msg.eventId);
        assert.ok(ids.includes(join.eventId));
        const members = await alice.get(
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`,
        );
        assert.ok(Object.keys(members.body.joined as object).includes(BOB));
        // A retry of the same event is answered as accepted and stored once.
        assert.deepEqual(await ingest(msg), { [msg.eventId]: {} });
        await doctorClean(roomId);
      });

      it('keeps the cached room head equal to the stored one across remote events', async () => {
        const roomId = await newRoom();
        const same = async () => {
          const cached = await server.hs.writer.head(roomId);
          const stored = await loadRoomHead(server.hs.storage.db, roomId);
          assert.ok(cached && stored);
          assert.deepEqual(
            cached.extremities.map((e) => [e.eventId, e.eventNid, e.depth]),
            stored.extremities.map((e) => [e.eventId, e.eventNid, e.depth]),
          );
          assert.deepEqual(cached.snapshot, stored.snapshot);
          const ids = (h: typeof cached) => [...h.state].map(([k, e]) => [k, e.eventId, e.eventNid]).sort();
          assert.deepEqual(ids(cached), ids(stored));
          return cached;
        };
        await bobJoins(roomId);
        await same();
        const msg = await remote(roomId, {
          type: 'm.room.message',
          content: { body: 'a', msgtype: 'm.text' },
        });
        assert.deepEqual(await ingest(msg), { [msg.eventId]: {} });
        assert.deepEqual(
          (await same()).extremities.map((e) => e.eventId),
          [msg.eventId],
        );
        const topic = await remote(roomId, {
          type: 'm.room.member',
          state_key: BOB,
          content: { membership: 'join', displayname: 'Bob' },
        });
        assert.deepEqual(await ingest(topic), { [topic.eventId]: {} });
        assert.equal((await same()).state.get(stateKey('m.room.member', BOB))?.eventId, topic.eventId);
        const sent = await alice.put(
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/h1`,
          {
            body: 'after',
            msgtype: 'm.text',
          },
        );
        assert.equal(sent.status, 200);
        const row = await getEventRowById(server.hs.storage.db, sent.body.event_id as string);
        const pdu = JSON.parse(row?.json ?? '{}') as { prev_events?: string[]; auth_events?: string[] };
        assert.deepEqual(pdu.prev_events, [topic.eventId]);
        await same();
        await doctorClean(roomId);
      });

      it('resolves a fork with state resolution and merges it', async () => {
        const roomId = await newRoom();
        const r = encodeURIComponent(roomId);
        await bobJoins(roomId);
        const pl = await alice.get(`/_matrix/client/v3/rooms/${r}/state/m.room.power_levels/`);
        const users = { ...(pl.body.users as object), [BOB]: 50 };
        await alice.put(`/_matrix/client/v3/rooms/${r}/state/m.room.power_levels/`, { ...pl.body, users });
        const base = (await server.hs.writer.head(roomId))?.extremities.map((e) => e.eventId) ?? [];
        await alice.put(`/_matrix/client/v3/rooms/${r}/state/m.room.topic/`, { topic: 'from alice' });
        const topic = await remote(
          roomId,
          { type: 'm.room.topic', state_key: '', content: { topic: 'from bob' } },
          { prev: base, ts: Date.now() + 60_000 },
        );
        assert.deepEqual(await ingest(topic), { [topic.eventId]: {} });
        const head = await server.hs.writer.head(roomId);
        assert.equal(head?.extremities.length, 2);
        // Both topics have the same mainline position; the later origin_server_ts wins.
        const now = await alice.get(`/_matrix/client/v3/rooms/${r}/state/m.room.topic/`);
        assert.equal(now.body.topic, 'from bob');
        await doctorClean(roomId);
        const merge = await remote(roomId, {
          type: 'm.room.message',
          content: { body: 'merge', msgtype: 'm.text' },
        });
        assert.deepEqual(await ingest(merge), { [merge.eventId]: {} });
        assert.equal((await server.hs.writer.head(roomId))?.extremities.length, 1);
        const sent = await alice.put(`/_matrix/client/v3/rooms/${r}/send/m.room.message/t1`, {
          body: 'after',
          msgtype: 'm.text',
        });
        assert.equal(sent.status, 200);
        await doctorClean(roomId);
      });

      it('rejects an event its auth events do not allow; it is invisible', async () => {
        const roomId = await newRoom();
        await bobJoins(roomId);
        // Bob (power 0) may not change the power levels.
        const head = await server.hs.writer.head(roomId);
        const plContent = head?.state.get(stateKey('m.room.power_levels', ''))?.pdu.content ?? {};
        const grab = await remote(roomId, {
          type: 'm.room.power_levels',
          state_key: '',
          content: { ...plContent, users: { [BOB]: 100 } },
        });
        const res = await ingest(grab);
        assert.match(String(res[grab.eventId]?.error), /not allowed/);
        const row = await getEventRowById(server.hs.storage.db, grab.eventId);
        assert.ok(row?.rejected_reason);
        assert.equal(row.stream_ordering, null);
        const got = await alice.get(
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(grab.eventId)}`,
        );
        assert.equal(got.status, 404);
        assert.ok(!(await timelineIds(roomId)).includes(grab.eventId));
        const after = await server.hs.writer.head(roomId);
        assert.notEqual(after?.state.get(stateKey('m.room.power_levels', ''))?.eventId, grab.eventId);
        // A later event citing the rejected one as its prev is checked against the state before it.
        const next = await remote(
          roomId,
          { type: 'm.room.message', content: { body: 'x', msgtype: 'm.text' } },
          { prev: [grab.eventId] },
        );
        assert.deepEqual(await ingest(next), { [next.eventId]: {} });
        await doctorClean(roomId);
      });

      it('soft-fails an event the current state does not allow', async () => {
        const roomId = await newRoom();
        await bobJoins(roomId);
        // Bob's server sends a message it built before it saw the ban.
        const late = await remote(roomId, {
          type: 'm.room.message',
          content: { body: 'sneaky', msgtype: 'm.text' },
        });
        const ban = await alice.post(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/ban`, {
          user_id: BOB,
        });
        assert.equal(ban.status, 200);
        const res = await ingest(late);
        assert.deepEqual(res[late.eventId], {});
        const row = await getEventRowById(server.hs.storage.db, late.eventId);
        assert.equal(row?.soft_failed, 1);
        assert.ok(!(await timelineIds(roomId)).includes(late.eventId));
        assert.equal((await server.hs.writer.head(roomId))?.extremities.length, 1);
        await doctorClean(roomId);
      });

      it('fetches unknown prev events with get_missing_events', async () => {
        const roomId = await newRoom();
        await bobJoins(roomId);
        const first = await remote(roomId, {
          type: 'm.room.message',
          content: { body: '1', msgtype: 'm.text' },
        });
        const depth = (first.pdu as { depth: number }).depth + 1;
        // `second` cites `first`, which this server has not seen: the remote hands it over.
        const second = await remote(
          roomId,
          { type: 'm.room.message', content: { body: '2', msgtype: 'm.text' } },
          { prev: [first.eventId], depth },
        );
        missing = [first.pdu];
        const res = await ingest(second);
        missing = [];
        assert.deepEqual(res, { [second.eventId]: {} });
        const ids = await timelineIds(roomId);
        assert.deepEqual(ids.slice(0, 2), [second.eventId, first.eventId]);
        await doctorClean(roomId);
      });

      it('fetches the state at an unknown prev event with /state_ids and /event when the gap cannot be filled', async () => {
        const roomId = await newRoom();
        await bobJoins(roomId);
        const head = await server.hs.writer.head(roomId);
        const stateIds = [...(head?.state.values() ?? [])].map((e) => e.eventId);
        const first = await remote(
          roomId,
          { type: 'm.room.message', content: { body: 'unseen', msgtype: 'm.text' } },
          {},
        );
        const second = await remote(
          roomId,
          { type: 'm.room.message', content: { body: 'after a gap', msgtype: 'm.text' } },
          { prev: [first.eventId], depth: (first.pdu as { depth: number }).depth + 1 },
        );
        missing = [];
        gets = new Map<string, unknown>([
          [
            `/_matrix/federation/v1/state_ids/${encodeURIComponent(roomId)}?event_id=${first.eventId}`,
            { pdu_ids: stateIds, auth_chain_ids: [] },
          ],
          [`/_matrix/federation/v1/event/${encodeURIComponent(first.eventId)}`, { pdus: [first.pdu] }],
        ]);
        const res = await ingest(second);
        gets = new Map();
        assert.deepEqual(res, { [second.eventId]: {} });
        const firstRow = await getEventRowById(server.hs.storage.db, first.eventId);
        assert.equal(firstRow?.outlier, 1);
        assert.equal(firstRow.stream_ordering, null);
        const ids = await timelineIds(roomId);
        assert.equal(ids[0], second.eventId);
        assert.ok(!ids.includes(first.eventId));
        await doctorClean(roomId);
      });

      it('fetches a state with many unknown events with one /state request instead of /event each', async () => {
        const roomId = await newRoom();
        await bobJoins(roomId);
        const head = await server.hs.writer.head(roomId);
        const stateIds = [...(head?.state.values() ?? [])].map((e) => e.eventId);
        const joins: Built[] = [];
        for (let i = 0; i < 25; i++) {
          const prev = joins.at(-1);
          joins.push(
            await remote(
              roomId,
              {
                type: 'm.room.member',
                state_key: `@u${i}:${REMOTE}`,
                sender: `@u${i}:${REMOTE}`,
                content: { membership: 'join' },
              },
              prev ? { prev: [prev.eventId], depth: (prev.pdu as { depth: number }).depth + 1 } : {},
            ),
          );
        }
        const last = joins.at(-1) as Built;
        const after = await remote(
          roomId,
          { type: 'm.room.message', content: { body: 'after 25 unseen joins', msgtype: 'm.text' } },
          { prev: [last.eventId], depth: (last.pdu as { depth: number }).depth + 1 },
        );
        const r = encodeURIComponent(roomId);
        missing = [];
        // Only /state and the one /event it lacks are scripted: an /event per unknown join would be refused.
        gets = new Map<string, unknown>([
          [
            `/_matrix/federation/v1/state_ids/${r}?event_id=${last.eventId}`,
            { pdu_ids: [...stateIds, ...joins.slice(0, -1).map((j) => j.eventId)], auth_chain_ids: [] },
          ],
          [
            `/_matrix/federation/v1/state/${r}?event_id=${last.eventId}`,
            { pdus: joins.slice(0, -1).map((j) => j.pdu), auth_chain: [] },
          ],
          [`/_matrix/federation/v1/event/${encodeURIComponent(last.eventId)}`, { pdus: [last.pdu] }],
        ]);
        const res = await ingest(after);
        gets = new Map();
        assert.deepEqual(res, { [after.eventId]: {} });
        for (const j of joins)
          assert.equal((await getEventRowById(server.hs.storage.db, j.eventId))?.outlier, 1);
        const members = await alice.get(`/_matrix/client/v3/rooms/${r}/joined_members`);
        assert.ok(`@u0:${REMOTE}` in (members.body.joined as object), JSON.stringify(members.body));
        await doctorClean(roomId);
      });

      it('drops the PDUs of a server m.room.server_acl denies', async () => {
        const roomId = await newRoom();
        await bobJoins(roomId);
        const acl = await alice.put(
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.server_acl/`,
          {
            allow: ['*'],
            deny: [REMOTE],
            allow_ip_literals: true,
          },
        );
        assert.equal(acl.status, 200);
        const msg = await remote(roomId, {
          type: 'm.room.message',
          content: { body: 'denied', msgtype: 'm.text' },
        });
        const res = await ingest(msg);
        assert.match(String(res[msg.eventId]?.error), /banned/);
        assert.equal(await getEventRowById(server.hs.storage.db, msg.eventId), undefined);
      });

      it('refuses a bad signature and stores a content hash mismatch redacted', async () => {
        const roomId = await newRoom();
        await bobJoins(roomId);
        const forged = await remote(roomId, {
          type: 'm.room.message',
          content: { body: 'f', msgtype: 'm.text' },
        });
        const sigs = forged.pdu.signatures as Record<string, Record<string, string>>;
        const sig = sigs[REMOTE]?.[KEY_ID] ?? '';
        sigs[REMOTE] = { [KEY_ID]: (sig.startsWith('A') ? 'B' : 'A') + sig.slice(1) };
        const res = await ingest(forged);
        assert.match(String(res[forged.eventId]?.error), /signature/);
        assert.equal(await getEventRowById(server.hs.storage.db, forged.eventId), undefined);

        const tampered = await remote(roomId, {
          type: 'm.room.message',
          content: { body: 'original', msgtype: 'm.text' },
        });
        (tampered.pdu.content as JsonObject).body = 'changed in transit';
        assert.deepEqual(await ingest(tampered), { [tampered.eventId]: {} });
        const row = await getEventRowById(server.hs.storage.db, tampered.eventId);
        assert.deepEqual((JSON.parse(row?.json ?? '{}') as Pdu).content, {});
        await doctorClean(roomId);
      });
    });
  }
}
