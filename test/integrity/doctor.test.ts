/**
 * One case per doctor check: each room is damaged in one way with SQL while the server is stopped; the doctor must
 * find exactly that kind of problem there, --repair must fix it, a second run must find nothing, and the restarted
 * server must serve every undamaged event through /sync and /messages (and accept new ones).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { DoctorReport } from '../../src/integrity/doctor.js';
import type { ProblemKind } from '../../src/integrity/problems.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';
import {
  allMessages,
  bodies,
  createRoom,
  damage,
  doctor,
  nidOf,
  roomNid,
  sendText,
  setState,
  syncBodies,
} from './util.js';

type User = Client & { userId: string; deviceId: string };

interface Case {
  name: string;
  kinds: ProblemKind[];
  room?: string;
  /** Bodies of messages sent (m0..m5); those damaged beyond repair are listed in `lost`. */
  lost?: string[];
  ids: Record<string, string>;
  engines?: string[];
}

const MSGS = ['m0', 'm1', 'm2', 'm3', 'm4', 'm5'];

for (const engine of ENGINES) {
  describe(`${engine}: doctor checks and repairs`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let found: DoctorReport;
    let repaired: DoctorReport;
    let second: DoctorReport;
    const cases: Case[] = [
      {
        name: 'event JSON missing, unparsable or failing its hashes',
        kinds: [
          'event_json_missing',
          'event_json_unparsable',
          'event_hash_mismatch',
          'event_content_hash_mismatch',
        ],
        lost: ['m1', 'm2', 'm3', 'm4'],
        ids: {},
      },
      {
        name: 'damaged state event: quarantined, state recomputed around it',
        kinds: ['event_json_unparsable', 'snapshot_entry_dangling', 'current_state_mismatch'],
        ids: {},
      },
      { name: 'event without a snapshot', kinds: ['snapshot_missing'], ids: {} },
      { name: 'snapshot chain with a missing link', kinds: ['snapshot_chain_broken'], ids: {} },
      { name: 'snapshot entry pointing at a missing event', kinds: ['snapshot_entry_dangling'], ids: {} },
      { name: 'snapshot disagreeing with the replayed state', kinds: ['state_mismatch'], ids: {} },
      { name: 'snapshot chain with a cycle', kinds: ['snapshot_chain_cycle'], ids: {} },
      { name: 'edge rows differing from the JSON', kinds: ['edge_rows_mismatch'], ids: {} },
      {
        name: 'edge to an event the server does not have',
        kinds: ['edge_dangling', 'forward_extremities_mismatch'],
        lost: ['m2'],
        ids: {},
      },
      { name: 'forward extremities wrong', kinds: ['forward_extremities_mismatch'], ids: {} },
      {
        name: 'current state and current snapshot wrong',
        kinds: ['current_state_mismatch', 'current_snapshot_mismatch'],
        ids: {},
      },
      { name: 'membership read model disagreeing with state', kinds: ['room_members_mismatch'], ids: {} },
      { name: 'event without a stream ordering', kinds: ['stream_ordering_missing'], ids: {} },
      {
        name: 'two events sharing a stream ordering',
        kinds: ['stream_ordering_duplicate'],
        ids: {},
        engines: ['postgres'],
      },
    ];
    const byName = (n: string): Case => cases.find((c) => c.name.startsWith(n)) as Case;
    const active = () => cases.filter((c) => !c.engines || c.engines.includes(engine));

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('doc_alice');
      bob = await server.user('doc_bob');
      for (const c of active()) {
        c.room = await createRoom(alice);
        const rid = enc(c.room);
        await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {});
        c.ids.topic1 = await setState(alice, c.room, 'm.room.topic', { topic: 'first' });
        c.ids.topic2 = await setState(alice, c.room, 'm.room.topic', { topic: 'second' });
        for (const m of MSGS) c.ids[m] = await sendText(alice, c.room, m, `${c.room}-${m}`);
        c.ids.name = await setState(alice, c.room, 'm.room.name', { name: 'n' });
        c.ids.m6 = await sendText(alice, c.room, 'm6', `${c.room}-m6`);
      }
      await server.stop();
      await damage(server, async (db) => {
        const setJson = (id: string, json: string) =>
          db.updateTable('events').set({ json }).where('event_id', '=', id).execute();
        const jsonOf = async (id: string) =>
          (await db.selectFrom('events').select('json').where('event_id', '=', id).executeTakeFirstOrThrow())
            .json;

        let c = byName('event JSON missing');
        await setJson(c.ids.m1 as string, '');
        await setJson(c.ids.m2 as string, '{not json');
        await setJson(
          c.ids.m3 as string,
          (await jsonOf(c.ids.m3 as string)).replace('"origin_server_ts":', '"origin_server_ts":1'),
        );
        await setJson(
          c.ids.m4 as string,
          (await jsonOf(c.ids.m4 as string)).replace('"body":"m4"', '"body":"forged"'),
        );

        c = byName('damaged state event');
        await setJson(c.ids.topic2 as string, '{"type":');

        c = byName('event without a snapshot');
        await db
          .updateTable('events')
          .set({ state_snapshot_nid: null })
          .where('event_id', '=', c.ids.m3 as string)
          .execute();

        c = byName('snapshot chain with a missing link');
        let snap = (await nidOf(db, c.ids.m0 as string)).snap as number; // created by topic2
        await db.deleteFrom('state_snapshot_entries').where('snapshot_nid', '=', snap).execute();
        await db.deleteFrom('state_snapshots').where('snapshot_nid', '=', snap).execute();

        c = byName('snapshot entry pointing');
        snap = (await nidOf(db, c.ids.m0 as string)).snap as number;
        await db
          .updateTable('state_snapshot_entries')
          .set({ event_nid: 999_999_999 })
          .where('snapshot_nid', '=', snap)
          .execute();

        c = byName('snapshot disagreeing');
        snap = (await nidOf(db, c.ids.m0 as string)).snap as number;
        const topic1 = await nidOf(db, c.ids.topic1 as string);
        await db
          .updateTable('state_snapshot_entries')
          .set({ event_nid: topic1.nid })
          .where('snapshot_nid', '=', snap)
          .execute();

        c = byName('snapshot chain with a cycle');
        snap = (await nidOf(db, c.ids.m0 as string)).snap as number;
        const later = (await nidOf(db, c.ids.m6 as string)).snap as number; // a descendant (after the name event)
        const parentOf = await db
          .selectFrom('state_snapshots')
          .select('parent_nid')
          .where('snapshot_nid', '=', snap)
          .executeTakeFirstOrThrow();
        await db
          .updateTable('state_snapshots')
          .set({ parent_nid: later })
          .where('snapshot_nid', '=', Number(parentOf.parent_nid))
          .execute();

        c = byName('edge rows differing');
        await db
          .deleteFrom('event_edges')
          .where('event_nid', '=', (await nidOf(db, c.ids.m3 as string)).nid)
          .execute();

        c = byName('edge to an event');
        const m2 = await nidOf(db, c.ids.m2 as string);
        await db.deleteFrom('event_edges').where('event_nid', '=', m2.nid).execute();
        await db.deleteFrom('event_auth_edges').where('event_nid', '=', m2.nid).execute();
        await db.deleteFrom('event_txn_ids').where('event_nid', '=', m2.nid).execute();
        await db.deleteFrom('events').where('event_nid', '=', m2.nid).execute();

        c = byName('forward extremities wrong');
        let rn = await roomNid(db, c.room as string);
        await db.deleteFrom('forward_extremities').where('room_nid', '=', rn).execute();
        await db
          .insertInto('forward_extremities')
          .values({ room_nid: rn, event_nid: (await nidOf(db, c.ids.m2 as string)).nid })
          .execute();

        c = byName('current state and current snapshot');
        rn = await roomNid(db, c.room as string);
        await db
          .updateTable('current_state')
          .set({ event_nid: 999_999_999 })
          .where('room_nid', '=', rn)
          .where('type', '=', 'm.room.topic')
          .execute();
        await db
          .deleteFrom('current_state')
          .where('room_nid', '=', rn)
          .where('type', '=', 'm.room.name')
          .execute();
        await db
          .updateTable('rooms')
          .set({ current_snapshot_nid: (await nidOf(db, c.ids.m0 as string)).snap })
          .where('room_nid', '=', rn)
          .execute();

        c = byName('membership read model');
        rn = await roomNid(db, c.room as string);
        await db
          .deleteFrom('room_members')
          .where('room_nid', '=', rn)
          .where('user_id', '=', bob.userId)
          .execute();
        await db
          .updateTable('room_members')
          .set({ membership: 'leave' })
          .where('room_nid', '=', rn)
          .where('user_id', '=', alice.userId)
          .execute();

        c = byName('event without a stream ordering');
        await db
          .updateTable('events')
          .set({ stream_ordering: null })
          .where('event_id', '=', c.ids.m2 as string)
          .execute();

        if (engine === 'postgres') {
          c = byName('two events sharing');
          await sql`ALTER TABLE events DROP CONSTRAINT IF EXISTS events_stream_ordering_key`.execute(db);
          const so = (await nidOf(db, c.ids.m1 as string)).so as number;
          await db
            .updateTable('events')
            .set({ stream_ordering: so })
            .where('event_id', '=', c.ids.m2 as string)
            .execute();
        }
      });
      found = await doctor(server);
      repaired = await doctor(server, { repair: true });
      second = await doctor(server, { repair: true });
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
    });
    after(() => server.close());

    it('the repair leaves nothing behind and a second repair finds nothing', () => {
      assert.deepEqual(repaired.remaining, [], JSON.stringify(repaired.remaining, null, 1));
      assert.deepEqual(second.problems, []);
      assert.equal(found.problems.length, repaired.problems.length);
    });

    for (const c of cases) {
      if (c.engines && !c.engines.includes(engine)) continue;
      it(c.name, async () => {
        const mine = found.problems.filter((p) => p.roomId === c.room);
        const kinds = new Set(mine.map((p) => p.kind));
        for (const k of c.kinds)
          assert.ok(kinds.has(k), `${k} not found in ${JSON.stringify(mine, null, 1)}`);
        const others = found.problems.filter(
          (p) => p.roomId !== null && p.roomId !== c.room && cases.every((x) => x.room !== p.roomId),
        );
        assert.deepEqual(others, []);
        const room = c.room as string;
        const want = [...MSGS.filter((m) => !(c.lost ?? []).includes(m)), 'm6'];
        const all = await allMessages(alice, room);
        assert.deepEqual(bodies(all), want);
        assert.deepEqual(await syncBodies(alice, room), want);
        const ids = all.map((e) => e.event_id);
        assert.equal(new Set(ids).size, ids.length, 'no event twice');
        // The room accepts new events after the repair, and its state is the replayed one.
        await sendText(alice, room, 'after', `${room}-after`);
        assert.deepEqual(bodies(await allMessages(bob, room)).slice(-1), ['after']);
        const topic = await alice.get(`/_matrix/client/v3/rooms/${enc(room)}/state/m.room.topic`);
        assert.equal(topic.status, 200);
        assert.equal(topic.body.topic, c.name.startsWith('damaged state event') ? 'first' : 'second');
      });
    }

    it('quarantined events keep their rows, reason and time', async () => {
      const c = byName('event JSON missing');
      await server.stop();
      const db = (await import('../../src/storage/db.js')).openKysely(server.db.config);
      try {
        const rows = await db
          .selectFrom('quarantined_events')
          .selectAll()
          .where('room_id', '=', c.room as string)
          .execute();
        assert.deepEqual(
          new Set(rows.map((r) => r.event_id)),
          new Set(['m1', 'm2', 'm3', 'm4'].map((m) => c.ids[m])),
        );
        for (const r of rows) {
          assert.ok(r.reason.length > 0);
          assert.ok(Number(r.quarantined_ts) > 0);
          assert.equal((JSON.parse(r.row_json) as { event_id: string }).event_id, r.event_id);
        }
        const missing = await db.selectFrom('missing_events').selectAll().execute();
        assert.ok(missing.some((m) => m.event_id === byName('edge to an event').ids.m2));
      } finally {
        await db.destroy();
      }
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      alice.baseUrl = server.url;
      bob.baseUrl = server.url;
    });
  });
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
