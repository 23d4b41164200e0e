/**
 * A hostile server (test/helpers/hostile-server.ts) joined to a room of Hearth A sends bad PDUs through PUT /send:
 * bad signatures, forged senders, content-hash mismatches, events that fail auth or only current state, oversize
 * and out-of-range events, events of another room or format, duplicates, non-objects. Each is answered with a 200
 * and a per-PDU error (or stored redacted, as the spec says), never seen by alice on A, never changes the current
 * state; the honest peer's next message (bob on Hearth B) still lands; the doctor finds A's database clean.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateSigningSeed } from '../../src/rooms/signing.js';
import type { JsonObject } from '../../src/rooms/event.js';
import { ENGINES } from '../helpers/engines.js';
import { HostileServer } from '../helpers/hostile-server.js';
import { HostileScene, until } from '../helpers/hostile-scene.js';

for (const engine of ENGINES) {
  describe(`${engine}: a hostile server's PDUs`, () => {
    const s = new HostileScene();
    let stateBefore: Map<string, string>;

    before(async () => {
      await s.start(engine);
      stateBefore = await s.currentState();
    });
    after(() => s.close());

    /** After a bad PDU: the state is what it was, the honest peer still gets through. */
    const unharmed = async () => {
      assert.deepEqual(await s.currentState(), stateBefore);
      await s.honestLands();
    };

    it('refuses a PDU with a bad signature; the good PDU beside it is accepted', async () => {
      const forged = await s.message('forged');
      const sigs = forged.pdu.signatures as Record<string, Record<string, string>>;
      const sig = sigs[s.hostile.serverName]?.[s.hostile.keyId] ?? '';
      sigs[s.hostile.serverName] = { [s.hostile.keyId]: (sig.startsWith('A') ? 'B' : 'A') + sig.slice(1) };
      const good = await s.message('good', { prev: forged.pdu.prev_events as string[] });
      const res = await s.send([forged.pdu, good.pdu]);
      assert.equal(res.status, 200);
      assert.match(String(res.pdus[forged.eventId]?.error), /signature/);
      assert.deepEqual(res.pdus[good.eventId], {});
      assert.equal(await s.row(forged.eventId), undefined);
      await s.invisible(forged.eventId);
      assert.ok((await s.seenByAlice()).messages.includes(good.eventId));
      await unharmed();
    });

    it("refuses a PDU whose sender is another server's user signed only by the hostile server", async () => {
      const forged = await s.message('I am bob', { sender: s.bob.userId });
      const res = await s.send([forged.pdu]);
      assert.equal(res.status, 200);
      assert.match(String(res.pdus[forged.eventId]?.error), new RegExp(`signature of ${s.b.serverName}`));
      assert.equal(await s.row(forged.eventId), undefined);
      await s.invisible(forged.eventId);
      await unharmed();
    });

    it('refuses a PDU signed with a key the hostile server does not have', async () => {
      const other = { serverName: s.hostile.serverName, keyId: 'ed25519:h1', seed: generateSigningSeed() };
      const ev = await s.message('wrong key', { signer: other });
      const res = await s.send([ev.pdu]);
      assert.match(String(res.pdus[ev.eventId]?.error), /signature/);
      assert.equal(await s.row(ev.eventId), undefined);
      await unharmed();
    });

    it('stores a content-hash mismatch redacted, as the spec says', async () => {
      const ev = await s.message('original');
      (ev.pdu.content as JsonObject).body = 'changed in transit';
      const res = await s.send([ev.pdu]);
      assert.deepEqual(res.pdus[ev.eventId], {});
      const got = await s.alice.get(
        `/_matrix/client/v3/rooms/${s.r}/event/${encodeURIComponent(ev.eventId)}`,
      );
      assert.equal(got.status, 200);
      assert.deepEqual(got.body.content, {});
      const seen = await s.seenByAlice();
      assert.ok(seen.messages.includes(ev.eventId));
      await unharmed();
    });

    it('rejects a power-level change by a user without power and a message from a non-member', async () => {
      const head = await s.a.hs.writer.head(s.roomId);
      const pl = [...(head?.state.values() ?? [])].find((e) => e.pdu.type === 'm.room.power_levels');
      const grab = await s.build({
        type: 'm.room.power_levels',
        state_key: '',
        content: { ...(pl?.pdu.content ?? {}), users: { [s.eve]: 100 } },
      });
      const stranger = `@stranger:${s.hostile.serverName}`;
      const intruder = await s.message('let me in', { sender: stranger });
      const res = await s.send([grab.pdu, intruder.pdu]);
      assert.equal(res.status, 200);
      assert.match(String(res.pdus[grab.eventId]?.error), /not allowed/);
      assert.match(String(res.pdus[intruder.eventId]?.error), /not allowed/);
      assert.ok((await s.row(grab.eventId))?.rejected_reason);
      await s.invisible(grab.eventId, intruder.eventId);
      await unharmed();
    });

    it('accepts nothing but the first copy of a PDU sent twice in one transaction', async () => {
      const ev = await s.message('twice');
      const res = await s.send([ev.pdu, ev.pdu]);
      assert.deepEqual(res.pdus, { [ev.eventId]: {} });
      const seen = await s.seenByAlice();
      assert.equal(seen.messages.filter((id) => id === ev.eventId).length, 1);
      assert.equal(seen.sync.filter((id) => id === ev.eventId).length, 1);
      await unharmed();
    });

    it('soft-fails an event its auth events and the state before it allow but the current state does not', async () => {
      // Mallory's message is built over a head where mallory is joined; alice bans mallory before it arrives.
      const late = await s.message('after my ban', { sender: s.mallory });
      const ban = await s.alice.post(`/_matrix/client/v3/rooms/${s.r}/ban`, { user_id: s.mallory });
      assert.equal(ban.status, 200);
      await until('the ban on A', async () =>
        (await s.currentState()).get(`m.room.member|${s.mallory}`) ? true : undefined,
      );
      stateBefore = await s.currentState();
      const res = await s.send([late.pdu]);
      assert.equal(res.status, 200);
      // Soft failure is no rejection: no error for the sending server (as Synapse).
      assert.deepEqual(res.pdus[late.eventId], {});
      const row = await s.row(late.eventId);
      assert.equal(row?.soft_failed, 1);
      assert.equal(row.stream_ordering, null);
      const head = await s.a.hs.writer.head(s.roomId);
      assert.ok(
        !head?.extremities.some((e) => e.eventId === late.eventId),
        'a soft-failed event is no extremity',
      );
      await s.invisible(late.eventId);
      await unharmed();
    });

    it('drops events with a depth beyond 2^63-1, oversize events and events of another room version', async () => {
      const deep = await s.message('deep', { depth: 2 ** 63 });
      const big = await s.message('x'.repeat(70_000));
      const legacy = s.hostile.build(
        {
          type: 'm.room.message',
          content: { msgtype: 'm.text', body: 'v1 format' },
          sender: s.eve,
          room_id: s.roomId,
          event_id: `$legacy:${s.hostile.serverName}`,
          prev_events: (deep.pdu.prev_events as string[]).slice(),
          auth_events: (deep.pdu.auth_events as string[]).slice(),
          depth: 1000,
          origin_server_ts: Date.now(),
        },
        '1',
      );
      const res = await s.send([deep.pdu, big.pdu, legacy.pdu]);
      assert.equal(res.status, 200);
      assert.match(String(res.pdus[deep.eventId]?.error), /depth/);
      assert.match(String(res.pdus[big.eventId]?.error), /bytes/);
      const others = Object.entries(res.pdus).filter(([id]) => id !== deep.eventId && id !== big.eventId);
      assert.equal(others.length, 1);
      assert.match(String(others[0]?.[1].error), /prev_events/);
      for (const id of [deep.eventId, big.eventId, legacy.eventId, others[0]?.[0] ?? ''])
        assert.equal(await s.row(id), undefined);
      await unharmed();
    });

    it('answers a transaction of non-object PDUs and PDUs without a room with the good PDU accepted', async () => {
      const good = await s.message('among garbage');
      const res = await s.send([
        1,
        'x',
        null,
        [],
        {},
        { room_id: 42 },
        { room_id: '!nope:x', type: 'm' },
        good.pdu,
      ]);
      assert.equal(res.status, 200);
      assert.deepEqual(res.pdus[good.eventId], {});
      assert.ok((await s.seenByAlice()).messages.includes(good.eventId));
      await unharmed();
    });

    it("does not let an event claiming another room's id into that room", async () => {
      const other = await s.alice.post('/_matrix/client/v3/createRoom', {
        preset: 'public_chat',
        room_version: '12',
      });
      assert.equal(other.status, 200);
      const otherId = other.body.room_id as string;
      const stray = await s.message('wrong room');
      const rebuilt = s.hostile.build(
        {
          type: 'm.room.message',
          content: { msgtype: 'm.text', body: 'wrong room' },
          sender: s.eve,
          room_id: otherId,
          prev_events: stray.pdu.prev_events as string[],
          auth_events: stray.pdu.auth_events as string[],
          depth: stray.pdu.depth as number,
          origin_server_ts: Date.now(),
        },
        '12',
      );
      const res = await s.send([rebuilt.pdu]);
      assert.equal(res.status, 200);
      assert.equal(typeof res.pdus[rebuilt.eventId]?.error, 'string');
      const msgs = await s.alice.get(
        `/_matrix/client/v3/rooms/${encodeURIComponent(otherId)}/messages?dir=b&limit=50`,
      );
      assert.ok(!(msgs.body.chunk as { event_id: string }[]).some((e) => e.event_id === rebuilt.eventId));
      const members = await s.alice.get(
        `/_matrix/client/v3/rooms/${encodeURIComponent(otherId)}/joined_members`,
      );
      assert.deepEqual(Object.keys(members.body.joined as object), [s.alice.userId]);
      await s.invisible(rebuilt.eventId);
      await unharmed();
    });

    it('refuses more than 50 PDUs or 100 EDUs, a body of garbage JSON and a body that is not an object', async () => {
      const many = [];
      for (let i = 0; i < 51; i++) many.push((await s.message(`flood ${i}`)).pdu);
      const tooMany = await s.send(many);
      assert.equal(tooMany.status, 400);
      assert.equal(tooMany.body.errcode, 'M_BAD_JSON');
      const edus = Array.from({ length: 101 }, () => ({ edu_type: 'm.typing', content: {} }));
      const tooManyEdus = await s.send([], edus);
      assert.equal(tooManyEdus.status, 400);
      const first = HostileServer.eventIdOf(many[0] as JsonObject, '12') ?? '';
      assert.equal(await s.row(first), undefined);
      for (const raw of ['{"pdus": [', '\u0000\u0001garbage', '[]', '"pdus"', '{"pdus": "x"}']) {
        const res = await s.hostile.request(s.a.serverName, 'PUT', '/_matrix/federation/v1/send/garbage', {
          raw,
          ...(raw.startsWith('{"pdus": "') || raw === '[]' || raw === '"pdus"'
            ? { body: JSON.parse(raw) as unknown }
            : {}),
        });
        assert.ok(res.status >= 400 && res.status < 500, `${raw}: ${res.status}`);
        assert.equal(
          typeof (res.body as { errcode?: unknown }).errcode,
          'string',
          `${raw}: ${JSON.stringify(res.body)}`,
        );
      }
      await unharmed();
    });

    it("drops the PDUs of a server the room's m.room.server_acl denies", async () => {
      const set = (deny: string[]) =>
        s.alice.put(`/_matrix/client/v3/rooms/${s.r}/state/m.room.server_acl/`, {
          allow: ['*'],
          deny,
          allow_ip_literals: true,
        });
      assert.equal((await set(['localhost'])).status, 200);
      stateBefore = await s.currentState();
      const ev = await s.message('denied');
      const last = (await s.seenByAlice()).messages[0] as string;
      // Its typing notifications and receipts for the room are ignored too.
      const typing = { edu_type: 'm.typing', content: { room_id: s.roomId, user_id: s.eve, typing: true } };
      const receipt = {
        edu_type: 'm.receipt',
        content: { [s.roomId]: { 'm.read': { [s.eve]: { event_ids: [last], data: { ts: 1 } } } } },
      };
      const res = await s.send([ev.pdu], [typing, receipt]);
      assert.equal(res.status, 200);
      assert.match(String(res.pdus[ev.eventId]?.error), /banned/);
      assert.equal(await s.row(ev.eventId), undefined);
      const ephemeral = async () => {
        const sync = await s.alice.get('/_matrix/client/v3/sync?timeout=0');
        const room = (sync.body.rooms as { join: Record<string, { ephemeral: { events: JsonObject[] } }> })
          .join[s.roomId];
        return JSON.stringify(room?.ephemeral.events ?? []);
      };
      assert.ok(!(await ephemeral()).includes(s.eve), 'typing or receipt of a denied server');
      const asked = await s.hostile.request(
        s.a.serverName,
        'GET',
        `/_matrix/federation/v1/state_ids/${s.r}?event_id=${encodeURIComponent(last)}`,
      );
      assert.equal(asked.status, 403);
      assert.equal((asked.body as { errcode?: string }).errcode, 'M_FORBIDDEN');
      await unharmed();
      assert.equal((await set([])).status, 200);
      stateBefore = await s.currentState();
      const allowed = await s.message('allowed again');
      const again = await s.send([allowed.pdu], [typing]);
      assert.deepEqual(again.pdus[allowed.eventId], {});
      assert.ok((await ephemeral()).includes(s.eve), 'typing once allowed again');
    });

    it("does not let a redaction by a user without power redact another user's message", async () => {
      const sent = await s.alice.put(`/_matrix/client/v3/rooms/${s.r}/send/m.room.message/keep`, {
        msgtype: 'm.text',
        body: 'keep me',
      });
      const target = sent.body.event_id as string;
      const own = await s.message('mine to redact');
      assert.deepEqual((await s.send([own.pdu])).pdus[own.eventId], {});
      const redact = (id: string) => s.build({ type: 'm.room.redaction', content: { redacts: id } });
      const bad = await redact(target);
      const good = await redact(own.eventId);
      const res = await s.send([bad.pdu, good.pdu]);
      assert.equal(res.status, 200);
      const content = async (id: string) =>
        (await s.alice.get(`/_matrix/client/v3/rooms/${s.r}/event/${encodeURIComponent(id)}`)).body.content;
      assert.deepEqual(await content(target), { msgtype: 'm.text', body: 'keep me' });
      assert.deepEqual(await content(own.eventId), {});
      await unharmed();
    });

    it('refuses a transaction nested deeper than JSON allows, with a Matrix error', async () => {
      let deep: unknown = 'bottom';
      for (let i = 0; i < 150; i++) deep = { d: deep };
      const ev = await s.build({
        type: 'm.room.message',
        content: { msgtype: 'm.text', body: 'deep', deep },
      });
      const res = await s.send([ev.pdu]);
      assert.ok(res.status === 200 || (res.status >= 400 && res.status < 500), `status ${res.status}`);
      if (res.status === 200) assert.equal(typeof res.pdus[ev.eventId]?.error, 'string');
      else assert.equal(typeof res.body.errcode, 'string');
      assert.equal(await s.row(ev.eventId), undefined);
      // Far deeper than a stack of recursive calls allows (not even the hostile server can sign it).
      const raw = `{"origin":"${s.hostile.serverName}","pdus":[${'{"d":'.repeat(50_000)}1${'}'.repeat(50_000)}]}`;
      const sent = await s.hostile.request(s.a.serverName, 'PUT', '/_matrix/federation/v1/send/deep', {
        raw,
      });
      assert.ok(sent.status >= 400 && sent.status < 500, `status ${sent.status}`);
      assert.equal(typeof (sent.body as { errcode?: unknown }).errcode, 'string');
      await unharmed();
    });

    it('leaves the database clean for the doctor', async () => {
      await s.doctorClean();
    });
  });
}
