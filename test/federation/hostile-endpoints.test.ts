/**
 * A hostile server (test/helpers/hostile-server.ts) joined to a room of Hearth A abuses the other entry points:
 * EDUs speaking for another server's users (typing, receipts, device-list updates, to-device messages) or of
 * unknown types, send_join with malformed or forged joins, send_leave for another server's user, /v2/invite with
 * forged invites. Each is refused with a 4xx Matrix error (or, for EDUs, ignored while the hostile server's own
 * EDUs in the same transaction work), the room's state is unchanged, the honest peer's next message (bob on
 * Hearth B) still lands, and the doctor finds A's database clean.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { EventTemplate } from '../../src/rooms/build.js';
import type { JsonObject } from '../../src/rooms/event.js';
import { ENGINES } from '../helpers/engines.js';
import { HostileScene, ROOM_VERSION, until, type User } from '../helpers/hostile-scene.js';
import type { HttpResult } from '../helpers/hostile-server.js';
import type { Json } from '../helpers/server.js';

/** A 4xx answer with a Matrix error body. */
function refused(res: HttpResult, what: string): void {
  assert.ok(res.status >= 400 && res.status < 500, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
  const body = res.body as { errcode?: unknown; error?: unknown };
  assert.equal(typeof body.errcode, 'string', `${what}: ${JSON.stringify(res.body)}`);
}

async function sync(user: User, since?: string): Promise<Json> {
  const res = await user.get(
    `/_matrix/client/v3/sync?timeout=0${since ? `&since=${encodeURIComponent(since)}` : ''}`,
  );
  assert.equal(res.status, 200);
  return res.body;
}

for (const engine of ENGINES) {
  describe(`${engine}: a hostile server's EDUs, joins, leaves and invites`, () => {
    const s = new HostileScene();
    let stateBefore: Map<string, string>;

    before(async () => {
      await s.start(engine);
      stateBefore = await s.currentState();
    });
    after(() => s.close());

    const unharmed = async () => {
      assert.deepEqual(await s.currentState(), stateBefore);
      await s.honestLands();
    };

    it("ignores EDUs for another server's users and of unknown types; its own EDUs beside them work", async () => {
      const start = await sync(s.alice);
      const last = (await s.seenByAlice()).messages[0] as string;
      const bob = s.bob.userId;
      const typing = (user: string) => ({
        edu_type: 'm.typing',
        content: { room_id: s.roomId, user_id: user, typing: true },
      });
      const receipt = (user: string) => ({
        edu_type: 'm.receipt',
        content: { [s.roomId]: { 'm.read': { [user]: { event_ids: [last], data: { ts: 1 } } } } },
      });
      const devices = (user: string) => ({
        edu_type: 'm.device_list_update',
        content: { user_id: user, device_id: 'D', stream_id: 1, deleted: false },
      });
      const toDevice = (sender: string, id: string) => ({
        edu_type: 'm.direct_to_device',
        content: {
          sender,
          type: `m.test.${id}`,
          message_id: id,
          messages: { [s.alice.userId]: { '*': { from: sender } } },
        },
      });
      const edus = [
        typing(bob),
        receipt(bob),
        devices(bob),
        toDevice(bob, 'forged'),
        { edu_type: 'org.example.unknown', content: { anything: true } },
        { edu_type: 'm.typing', content: 'not an object' },
        { edu_type: 'm.receipt', content: { [s.roomId]: { 'm.read': { [s.eve]: 'x' } } } },
        'not an edu',
        42,
        typing(s.eve),
        receipt(s.eve),
        devices(s.eve),
        toDevice(s.eve, 'honest'),
      ];
      const res = await s.send([], edus);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { pdus: {} });
      // Wait until every one of eve's EDUs shows, then check that none of the forged ones did.
      const seen = {
        typing: [] as string[],
        receipts: [] as string[],
        changed: [] as string[],
        toDevice: [] as string[],
      };
      let since = start.next_batch as string;
      await until("eve's EDUs in alice's sync", async () => {
        const body = await sync(s.alice, since);
        since = body.next_batch as string;
        const room = (
          body.rooms as { join?: Record<string, { ephemeral?: { events?: Json[] } }> } | undefined
        )?.join?.[s.roomId];
        for (const e of room?.ephemeral?.events ?? []) {
          if (e.type === 'm.typing')
            seen.typing.push(...((e.content as { user_ids: string[] }).user_ids ?? []));
          if (e.type === 'm.receipt')
            for (const byType of Object.values(e.content as Record<string, Record<string, Json>>))
              seen.receipts.push(...Object.keys(byType['m.read'] ?? {}));
        }
        seen.changed.push(...((body.device_lists as { changed?: string[] } | undefined)?.changed ?? []));
        seen.toDevice.push(
          ...((body.to_device as { events?: Json[] } | undefined)?.events ?? []).map((e) => String(e.type)),
        );
        return [seen.typing, seen.receipts, seen.changed].every((l) => l.includes(s.eve)) &&
          seen.toDevice.includes('m.test.honest')
          ? true
          : undefined;
      });
      assert.ok(!seen.typing.includes(bob), 'forged typing');
      assert.ok(!seen.receipts.includes(bob), 'forged receipt');
      assert.ok(!seen.changed.includes(bob), 'forged device-list update');
      assert.ok(!seen.toDevice.includes('m.test.forged'), 'forged to-device message');
      await unharmed();
    });

    /** A join of `userId` from make_join, signed by the hostile server (not sent). */
    const joinFor = async (userId: string): Promise<{ eventId: string; pdu: JsonObject }> => {
      const made = await s.hostile.request(
        s.a.serverName,
        'GET',
        `/_matrix/federation/v1/make_join/${s.r}/${encodeURIComponent(userId)}?ver=${ROOM_VERSION}`,
      );
      assert.equal(made.status, 200, JSON.stringify(made.body));
      const {
        hashes: _h,
        signatures: _s,
        origin: _o,
        ...template
      } = (made.body as { event: JsonObject }).event;
      return s.hostile.build(template as unknown as EventTemplate, ROOM_VERSION);
    };
    const sendJoin = (eventId: string, opts: { body?: unknown; raw?: string }) =>
      s.hostile.request(
        s.a.serverName,
        'PUT',
        `/_matrix/federation/v2/send_join/${s.r}/${encodeURIComponent(eventId)}`,
        opts,
      );

    it('refuses malformed and forged joins on send_join', async () => {
      const nina = `@nina:${s.hostile.serverName}`;
      const good = await joinFor(nina);
      refused(await sendJoin(good.eventId, { raw: '{"type": "m.room.member", ' }), 'garbage');
      refused(await sendJoin(good.eventId, { body: [good.pdu] }), 'an array');
      refused(await sendJoin(good.eventId, { body: { type: 'm.room.member' } }), 'not an event');
      const badSig = structuredClone(good.pdu);
      (badSig.signatures as Record<string, Record<string, string>>)[s.hostile.serverName] = {
        [s.hostile.keyId]: 'A'.repeat(86),
      };
      refused(await sendJoin(good.eventId, { body: badSig }), 'a bad signature');
      const tampered = structuredClone(good.pdu);
      (tampered.content as JsonObject).displayname = 'changed';
      refused(await sendJoin(good.eventId, { body: tampered }), 'a content hash mismatch');
      refused(await sendJoin(`$${'A'.repeat(43)}`, { body: good.pdu }), 'another event id');
      const { hashes: _h, signatures: _s, ...template } = good.pdu;
      const leave = s.hostile.build(
        { ...(template as unknown as EventTemplate), content: { membership: 'leave' } },
        ROOM_VERSION,
      );
      refused(await sendJoin(leave.eventId, { body: leave.pdu }), 'a leave');
      // A join of bob (a user of B) signed by the hostile server alone.
      const forged = s.hostile.build(
        { ...(template as unknown as EventTemplate), sender: s.bob.userId, state_key: s.bob.userId },
        ROOM_VERSION,
      );
      refused(await sendJoin(forged.eventId, { body: forged.pdu }), "another server's user");
      const members = await s.alice.get(`/_matrix/client/v3/rooms/${s.r}/joined_members`);
      assert.ok(!(nina in (members.body.joined as object)));
      await s.invisible(good.eventId, leave.eventId, forged.eventId);
      await unharmed();
    });

    it("refuses send_leave for another server's user", async () => {
      const head = await s.a.hs.writer.head(s.roomId);
      const memberOf = (u: string) =>
        [...(head?.state.values() ?? [])].find((e) => e.pdu.state_key === u)?.eventId;
      const leaveOf = (sender: string, target: string) =>
        s.build(
          { type: 'm.room.member', state_key: target, sender, content: { membership: 'leave' } },
          {
            auth: [
              memberOf(target),
              memberOf(sender),
              ...(head
                ? [...head.state.values()]
                    .filter((e) => e.pdu.type === 'm.room.power_levels')
                    .map((e) => e.eventId)
                : []),
            ].filter((x): x is string => x !== undefined),
          },
        );
      const asBob = await leaveOf(s.bob.userId, s.bob.userId);
      const byEve = await leaveOf(s.eve, s.bob.userId);
      for (const ev of [asBob, byEve]) {
        const res = await s.hostile.request(
          s.a.serverName,
          'PUT',
          `/_matrix/federation/v2/send_leave/${s.r}/${encodeURIComponent(ev.eventId)}`,
          { body: ev.pdu },
        );
        refused(res, `leave ${ev.eventId}`);
      }
      const members = await s.alice.get(`/_matrix/client/v3/rooms/${s.r}/joined_members`);
      assert.ok(s.bob.userId in (members.body.joined as object));
      await s.invisible(asBob.eventId, byEve.eventId);
      await unharmed();
    });

    it('refuses forged invites on /v2/invite', async () => {
      const carol = await s.a.user('carol');
      const invite = (sender: string, target: string) =>
        s.build({ type: 'm.room.member', state_key: target, sender, content: { membership: 'invite' } });
      const put = (ev: { eventId: string; pdu: unknown }, extra: JsonObject = {}) =>
        s.hostile.request(
          s.a.serverName,
          'PUT',
          `/_matrix/federation/v2/invite/${s.r}/${encodeURIComponent(ev.eventId)}`,
          {
            body: { room_version: ROOM_VERSION, event: ev.pdu, invite_room_state: [], ...extra },
          },
        );
      refused(await put(await invite(s.bob.userId, carol.userId)), 'a sender of another server');
      const badSig = await invite(s.eve, carol.userId);
      (badSig.pdu.signatures as Record<string, Record<string, string>>)[s.hostile.serverName] = {
        [s.hostile.keyId]: 'A'.repeat(86),
      };
      refused(await put(badSig), 'a bad signature');
      const tampered = await invite(s.eve, carol.userId);
      (tampered.pdu.content as JsonObject).reason = 'changed';
      refused(await put(tampered), 'a content hash mismatch');
      refused(await put(await invite(s.eve, `@dave:${s.b.serverName}`)), 'a user of another server');
      refused(
        await put(await invite(s.eve, carol.userId), { room_version: '999' }),
        'an unknown room version',
      );
      refused(
        await s.hostile.request(s.a.serverName, 'PUT', `/_matrix/federation/v2/invite/${s.r}/x`, {
          raw: 'garbage',
        }),
        'garbage',
      );
      const body = await sync(carol);
      assert.deepEqual(Object.keys((body.rooms as { invite?: object } | undefined)?.invite ?? {}), []);
      await unharmed();
    });

    it('leaves the database clean for the doctor', async () => {
      await s.doctorClean();
    });
  });
}
