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
import { HostileScene } from '../helpers/hostile-scene.js';

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

    it('leaves the database clean for the doctor', async () => {
      await s.doctorClean();
    });
  });
}
