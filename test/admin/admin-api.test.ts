import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const A = '/_synapse/admin';

for (const engine of ENGINES) {
  describe(`admin API over HTTP (${engine})`, () => {
    let ts: TestServer;
    before(async () => {
      ts = await startTestServer(engine);
    });
    after(() => ts.close());

    const poll = async (get: () => Promise<{ body: Record<string, unknown> }>) => {
      for (let i = 0; i < 100; i++) {
        const b = (await get()).body;
        if (b.status === 'complete' || b.status === 'failed') return b;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('job did not finish');
    };

    it('refuses non-admins with M_FORBIDDEN', async () => {
      const user = await ts.user('plain');
      const res = await user.get(`${A}/v2/users`);
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
    });

    it('manages registration tokens, devices and whois', async () => {
      const admin = await ts.user('tokadmin', { admin: true });
      const made = await admin.post(`${A}/v1/registration_tokens/new`, { token: 'abc', uses_allowed: 2 });
      assert.deepEqual(made.body, {
        token: 'abc',
        uses_allowed: 2,
        pending: 0,
        completed: 0,
        expiry_time: null,
      });
      const upd = await admin.put(`${A}/v1/registration_tokens/abc`, { uses_allowed: 0 });
      assert.equal(upd.body.uses_allowed, 0);
      const invalid = await admin.get(`${A}/v1/registration_tokens?valid=false`);
      assert.deepEqual(
        (invalid.body.registration_tokens as { token: string }[]).map((t) => t.token),
        ['abc'],
      );
      assert.equal((await admin.post(`${A}/v1/registration_tokens/new`, { token: 'abc' })).status, 400);
      assert.equal((await admin.delete(`${A}/v1/registration_tokens/abc`)).status, 200);
      assert.equal((await admin.get(`${A}/v1/registration_tokens/abc`)).status, 404);

      const who = await admin.get(`${A}/v1/whois/${admin.userId}`);
      assert.ok(admin.deviceId in (who.body.devices as object));
      const devs = await admin.get(`${A}/v2/users/${admin.userId}/devices`);
      assert.equal(devs.body.total, 1);
      const victim = await ts.user('devvictim');
      assert.equal(
        (await admin.delete(`${A}/v2/users/${victim.userId}/devices/${victim.deviceId}`)).status,
        200,
      );
      assert.equal((await victim.get('/_matrix/client/v3/account/whoami')).status, 401);
    });

    it('purges old history keeping state, extremities and the schema invariants', async () => {
      const admin = await ts.user('purger', { admin: true });
      const room = (await admin.post('/_matrix/client/v3/createRoom', { name: 'History' })).body
        .room_id as string;
      const send = async (i: number) =>
        (
          await admin.put(`/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/p${i}`, {
            msgtype: 'm.text',
            body: `message ${i}`,
          })
        ).body.event_id as string;
      for (let i = 0; i < 3; i++) await send(i);
      const cutoff = await send(3);
      await admin.put(`/_matrix/client/v3/rooms/${encodeURIComponent(room)}/state/m.room.topic`, {
        topic: 't',
      });
      const lastMsg = await send(4);
      const db = ts.hs.storage.db;
      const count = async (where: 'msg' | 'state') =>
        Number(
          (
            await db
              .selectFrom('events')
              .innerJoin('rooms', 'rooms.room_nid', 'events.room_nid')
              .select((eb) => eb.fn.countAll().as('n'))
              .where('rooms.room_id', '=', room)
              .where('events.state_key', where === 'msg' ? 'is' : 'is not', null)
              .executeTakeFirstOrThrow()
          ).n,
        );
      const stateBefore = await count('state');
      const started = await admin.post(`${A}/v1/purge_history/${room}`, {
        purge_up_to_event_id: cutoff,
        delete_local_events: true,
      });
      const status = await poll(() =>
        admin.get(`${A}/v1/purge_history_status/${started.body.purge_id as string}`),
      );
      assert.equal(status.status, 'complete');
      assert.equal(await count('msg'), 2); // the cutoff event and the last one remain
      assert.equal(await count('state'), stateBefore);
      // Invariants: every snapshot entry and current-state row points at an existing event.
      const dangling = await sql<{ n: number }>`
        SELECT (SELECT COUNT(*) FROM state_snapshot_entries s WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_nid = s.event_nid))
             + (SELECT COUNT(*) FROM current_state c WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_nid = c.event_nid))
             + (SELECT COUNT(*) FROM forward_extremities f WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_nid = f.event_nid)) AS n`.execute(
        db,
      );
      assert.equal(Number(dangling.rows[0]?.n), 0);
      // The room still works: messages paginate, a new send extends the graph.
      const msgs = await admin.get(
        `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/messages?dir=b&limit=50`,
      );
      assert.equal(msgs.status, 200);
      const ids = (msgs.body.chunk as { event_id: string }[]).map((e) => e.event_id);
      assert.ok(ids.includes(lastMsg) && ids.includes(cutoff));
      assert.equal(typeof (await send(5)), 'string');
    });

    it('deletes a room in the background with status polling, removing every row', async () => {
      const admin = await ts.user('deleter', { admin: true });
      const member = await ts.user('member2');
      const room = (
        await admin.post('/_matrix/client/v3/createRoom', { preset: 'public_chat', room_alias_name: 'gone' })
      ).body.room_id as string;
      await member.post(`/_matrix/client/v3/join/${encodeURIComponent(room)}`);
      const started = await admin.request('DELETE', `${A}/v2/rooms/${room}`, {});
      const deleteId = started.body.delete_id as string;
      const done = await poll(() => admin.get(`${A}/v2/rooms/delete_status/${deleteId}`));
      assert.equal(done.status, 'complete');
      const shut = done.shutdown_room as { kicked_users: string[]; local_aliases: string[] };
      assert.deepEqual(shut.kicked_users.sort(), [admin.userId, member.userId].sort());
      assert.deepEqual(shut.local_aliases, ['#gone:test.local']);
      const byRoom = await admin.get(`${A}/v2/rooms/${room}/delete_status`);
      assert.equal((byRoom.body.results as { delete_id: string }[])[0]?.delete_id, deleteId);
      assert.equal((await admin.get(`${A}/v1/rooms/${room}`)).status, 404);
      const left = await ts.hs.storage.db
        .selectFrom('rooms')
        .select('room_id')
        .where('room_id', '=', room)
        .execute();
      assert.equal(left.length, 0);
      assert.equal((await member.post(`/_matrix/client/v3/join/${encodeURIComponent(room)}`)).status, 404);
    });
  });
}
