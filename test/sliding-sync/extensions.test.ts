/**
 * Simplified sliding sync (MSC4186) extensions through HTTP on every engine: to_device (with since and ack),
 * e2ee, account_data (lists/rooms filters, deltas, rooms entering the window), receipts and typing (rooms in the
 * window only), request validation, and a long-poll answered by extension data.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { deviceKeys } from '../e2ee/helpers.js';
import { createRoom, ext, join, ok, say, slide, type User } from './helpers-ext.js';

const WINDOW = { ranges: [[0, 0]], timeline_limit: 1, required_state: [] };
const ALL = { ranges: [[0, 49]], timeline_limit: 1, required_state: [] };

for (const engine of ENGINES) {
  describe(`${engine}: sliding sync extensions`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    /** Two rooms shared by `me` and `other`: `inside` has the latest message, so a range [0,0] holds only it. */
    async function twoRooms(me: User, other: User): Promise<{ inside: string; outside: string }> {
      const outside = await createRoom(me, { preset: 'public_chat' });
      const inside = await createRoom(me, { preset: 'public_chat' });
      await join(other, outside);
      await join(other, inside);
      await say(other, outside, 'older');
      await say(other, inside, 'newer');
      return { inside, outside };
    }

    it('to_device: delivers up to limit, next_batch continues, since acknowledges (deletes)', async () => {
      const alice = await server.user('td_alice');
      const bob = await server.user('td_bob');
      for (const n of [1, 2, 3]) {
        await ok(
          alice.put(`/_matrix/client/v3/sendToDevice/m.test/t${n}`, {
            messages: { [bob.userId]: { [bob.deviceId]: { n } } },
          }),
        );
      }
      const body = (since?: string) => ({
        conn_id: 'td',
        lists: {},
        extensions: { to_device: { enabled: true, limit: 2, ...(since ? { since } : {}) } },
      });
      const first = await ok(slide(bob, body()));
      const td1 = ext(first, 'to_device');
      assert.deepEqual(
        (td1.events as Json[]).map((e) => [e.sender, e.type, (e.content as Json).n]),
        [
          [alice.userId, 'm.test', 1],
          [alice.userId, 'm.test', 2],
        ],
      );
      assert.equal(typeof td1.next_batch, 'string');
      // Not acknowledged: asking again without since hands out the same messages.
      const again = ext(await ok(slide(bob, body(), first.pos as string)), 'to_device');
      assert.deepEqual(
        (again.events as Json[]).map((e) => (e.content as Json).n),
        [1, 2],
      );
      const second = await ok(slide(bob, body(td1.next_batch as string), first.pos as string));
      const td2 = ext(second, 'to_device');
      assert.deepEqual(
        (td2.events as Json[]).map((e) => (e.content as Json).n),
        [3],
      );
      const third = ext(
        await ok(slide(bob, body(td2.next_batch as string), second.pos as string)),
        'to_device',
      );
      assert.deepEqual(third.events, []);
      const left = await server.hs.storage.db
        .selectFrom('to_device_messages')
        .select('stream_pos')
        .where('user_id', '=', bob.userId)
        .execute();
      assert.equal(left.length, 0, 'acknowledged messages are deleted');
      // Not enabled: no to_device section at all.
      const off = await ok(
        slide(bob, { conn_id: 'td2', lists: {}, extensions: { to_device: { enabled: false } } }),
      );
      assert.equal((off.extensions as Json | undefined)?.to_device, undefined);
    });

    it('e2ee: key counts and fallback types; device list changes after another user changes keys', async () => {
      const alice = await server.user('e2_alice');
      const bob = await server.user('e2_bob');
      const stranger = await server.user('e2_stranger');
      await twoRooms(alice, bob);
      await ok(
        alice.post('/_matrix/client/v3/keys/upload', {
          one_time_keys: { 'signed_curve25519:A1': { key: 'k1', signatures: {} }, 'curve25519:A2': 'k2' },
          fallback_keys: { 'signed_curve25519:FB': { key: 'fb', fallback: true, signatures: {} } },
        }),
      );
      const body = { conn_id: 'e2', lists: { all: ALL }, extensions: { e2ee: { enabled: true } } };
      const first = await ok(slide(alice, body));
      const e1 = ext(first, 'e2ee');
      assert.deepEqual(e1.device_one_time_keys_count, { signed_curve25519: 1, curve25519: 1 });
      assert.deepEqual(e1.device_unused_fallback_key_types, ['signed_curve25519']);
      assert.equal(e1.device_lists, undefined, 'no device list changes on an initial request');

      await ok(bob.post('/_matrix/client/v3/keys/upload', { device_keys: deviceKeys(bob).keys }));
      await ok(stranger.post('/_matrix/client/v3/keys/upload', { device_keys: deviceKeys(stranger).keys }));
      const second = await ok(slide(alice, body, first.pos as string));
      assert.deepEqual(ext(second, 'e2ee').device_lists, { changed: [bob.userId], left: [] });
      const third = await ok(slide(alice, body, second.pos as string));
      assert.deepEqual(ext(third, 'e2ee').device_lists, { changed: [], left: [] });
    });

    it('account_data: global and per room, filtered to lists/rooms, deltas, rooms entering the window', async () => {
      const alice = await server.user('ad_alice');
      const bob = await server.user('ad_bob');
      const { inside, outside } = await twoRooms(alice, bob);
      const u = encodeURIComponent(alice.userId);
      const roomData = (roomId: string, type: string, content: Json) =>
        ok(
          alice.put(
            `/_matrix/client/v3/user/${u}/rooms/${encodeURIComponent(roomId)}/account_data/${type}`,
            content,
          ),
        );
      await ok(alice.put(`/_matrix/client/v3/user/${u}/account_data/m.test.global`, { g: 1 }));
      await roomData(inside, 'm.test.room', { r: 'in' });
      await roomData(outside, 'm.test.room', { r: 'out' });

      const body = (extra: Json = {}) => ({
        conn_id: 'ad',
        lists: { win: WINDOW },
        extensions: { account_data: { enabled: true, ...extra } },
      });
      const first = await ok(slide(alice, body()));
      const a1 = ext(first, 'account_data');
      const globalTypes = (a1.global as Json[]).map((e) => e.type);
      assert.ok(globalTypes.includes('m.test.global'));
      assert.ok(
        globalTypes.includes('m.push_rules'),
        'push rules are part of the initial global account data',
      );
      assert.deepEqual(a1.rooms, { [inside]: [{ type: 'm.test.room', content: { r: 'in' } }] });

      // Deltas: only what changed since the previous response.
      await roomData(inside, 'm.test.other', { x: 2 });
      const second = await ok(slide(alice, body(), first.pos as string));
      const a2 = ext(second, 'account_data');
      assert.deepEqual(a2.global, []);
      assert.deepEqual(a2.rooms, { [inside]: [{ type: 'm.test.other', content: { x: 2 } }] });

      // An update in a room outside the window is not sent; when the room enters the window, all its data is.
      await roomData(outside, 'm.test.room', { r: 'out2' });
      const third = await ok(slide(alice, body(), second.pos as string));
      assert.deepEqual(ext(third, 'account_data').rooms, {});
      await say(bob, outside, 'bump');
      const fourth = await ok(slide(alice, body(), third.pos as string));
      assert.deepEqual(ext(fourth, 'account_data').rooms, {
        [outside]: [{ type: 'm.test.room', content: { r: 'out2' } }],
      });

      // lists: [] selects no list rooms; a room subscription is selected by rooms: [id].
      const none = await ok(slide(alice, { ...body({ lists: [] }), conn_id: 'ad2' }));
      assert.deepEqual(ext(none, 'account_data').rooms, {});
      const sub = await ok(
        slide(alice, {
          conn_id: 'ad3',
          lists: {},
          room_subscriptions: { [inside]: { timeline_limit: 1, required_state: [] } },
          extensions: { account_data: { enabled: true, lists: [], rooms: [inside] } },
        }),
      );
      assert.deepEqual(Object.keys(ext(sub, 'account_data').rooms as Json), [inside]);
    });

    it('receipts and typing: for the rooms in the window only, then deltas', async () => {
      const alice = await server.user('rt_alice');
      const bob = await server.user('rt_bob');
      const { inside, outside } = await twoRooms(alice, bob);
      const lastIn = await say(bob, inside, 'read me');
      const lastOut = await say(bob, outside, 'read me too');
      await say(bob, inside, 'keep inside on top');
      const receipt = (roomId: string, eventId: string) =>
        ok(
          bob.post(
            `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`,
            {},
          ),
        );
      const typing = (roomId: string, on: boolean) =>
        ok(
          bob.put(
            `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(bob.userId)}`,
            {
              typing: on,
              timeout: 30_000,
            },
          ),
        );
      await receipt(inside, lastIn);
      await receipt(outside, lastOut);
      await typing(inside, true);
      await typing(outside, true);

      const body = {
        conn_id: 'rt',
        lists: { win: WINDOW },
        extensions: { receipts: { enabled: true }, typing: { enabled: true } },
      };
      const first = await ok(slide(alice, body));
      const r1 = ext(first, 'receipts').rooms as Json;
      assert.deepEqual(Object.keys(r1), [inside]);
      const content = (r1[inside] as Json).content as Json;
      assert.equal((r1[inside] as Json).type, 'm.receipt');
      assert.ok(((content[lastIn] as Json)['m.read'] as Json)[bob.userId], 'bob read the event');
      const t1 = ext(first, 'typing').rooms as Json;
      assert.deepEqual(t1, { [inside]: { type: 'm.typing', content: { user_ids: [bob.userId] } } });

      // Nothing new: no receipts or typing again.
      const second = await ok(slide(alice, body, first.pos as string));
      assert.deepEqual(ext(second, 'receipts').rooms, {});
      assert.deepEqual(ext(second, 'typing').rooms, {});

      // Bob stops typing inside: an empty list for that room; outside stays silent.
      await typing(inside, false);
      await typing(outside, false);
      const third = await ok(slide(alice, body, second.pos as string));
      assert.deepEqual(ext(third, 'typing').rooms, {
        [inside]: { type: 'm.typing', content: { user_ids: [] } },
      });
      assert.deepEqual(ext(third, 'receipts').rooms, {});
    });

    it('validates known extensions and ignores unknown ones', async () => {
      const alice = await server.user('v_alice');
      const bad = [
        { to_device: { enabled: 'yes' } },
        { to_device: { enabled: true, since: 'not a number' } },
        { to_device: { enabled: true, limit: -1 } },
        { account_data: { enabled: true, lists: 'all' } },
        { receipts: 7 },
      ];
      for (const extensions of bad) {
        const res = await slide(alice, { lists: {}, extensions });
        assert.equal(res.status, 400, JSON.stringify(extensions));
        assert.equal(res.body.errcode, 'M_INVALID_PARAM');
      }
      const res = await ok(
        slide(alice, { lists: {}, extensions: { org_example_unknown: { enabled: true } } }),
      );
      assert.equal((res.extensions as Json | undefined)?.org_example_unknown, undefined);
    });

    it('a long-poll answers when a to-device message arrives', async () => {
      const alice = await server.user('lp_alice');
      const bob = await server.user('lp_bob');
      const body = { conn_id: 'lp', lists: {}, extensions: { to_device: { enabled: true } } };
      const first = await ok(slide(bob, body));
      const started = Date.now();
      const waiting = slide(bob, body, first.pos as string, 20_000);
      await new Promise((r) => setTimeout(r, 100));
      await ok(
        alice.put('/_matrix/client/v3/sendToDevice/m.test/lp1', {
          messages: { [bob.userId]: { [bob.deviceId]: { hello: true } } },
        }),
      );
      const res = await ok(waiting);
      assert.ok(Date.now() - started < 10_000, 'answered well before the timeout');
      assert.deepEqual(
        (ext(res, 'to_device').events as Json[]).map((e) => e.content),
        [{ hello: true }],
      );
    });
  });
}
