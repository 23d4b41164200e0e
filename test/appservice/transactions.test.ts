/**
 * Homeserver → application service transactions against a fake service (node:http): namespace interest (sender,
 * room member, member state key, alias, room id), order and exactly-once delivery with increasing distinct txn ids,
 * hs_token in the Authorization header, an outage (the same txn id re-sent with the same events, then everything in
 * order), ephemeral data only when asked, to-device messages to a service user's device. Every engine.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAccount } from '../../src/accounts/register.js';
import { runDoctor } from '../../src/integrity/doctor.js';
import { openStorage } from '../../src/storage/db.js';
import { upsertDevice } from '../../src/storage/devices.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';
import { FakeAppService, writeRegistration, type TxnEvent } from './transactions-helpers.js';

const enc = encodeURIComponent;

async function send(user: Client, roomId: string, body: string): Promise<string> {
  const res = await user.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${enc(body)}`, {
    msgtype: 'm.text',
    body,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function createRoom(user: Client, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await user.post('/_matrix/client/v3/createRoom', { preset: 'public_chat', ...extra });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

for (const engine of ENGINES) {
  describe(`${engine}: application service transactions`, () => {
    const bridge = new FakeAppService();
    const plain = new FakeAppService();
    let s: TestServer;
    let alice: Client & { userId: string };
    let r1 = '';
    let bridgeUser = '';
    let regDir = '';

    const joinRoom = (roomId: string, userId: string) =>
      s.hs.writer.send(roomId, {
        type: 'm.room.member',
        sender: userId,
        state_key: userId,
        content: { membership: 'join' },
      });

    before(async () => {
      await bridge.start();
      await plain.start();
      const dir = mkdtempSync(join(tmpdir(), 'hearth-as-'));
      regDir = dir;
      s = await startTestServer(engine, {
        presence: { enabled: true },
        app_service_config_files: [
          writeRegistration(dir, {
            id: 'bridge',
            url: bridge.url,
            users: ['@_bridge_.*'],
            aliases: ['#_bridge_.*'],
            receiveEphemeral: true,
            msc3202: true,
          }),
          writeRegistration(dir, { id: 'plain', url: plain.url, users: ['@_plain_.*'] }),
        ],
      });
      alice = await s.user('alice');
      bridgeUser = `@_bridge_a:${s.serverName}`;
    });
    after(async () => {
      await s?.close();
      rmSync(regDir, { recursive: true, force: true });
      await bridge.stop();
      await plain.stop();
    });

    it('delivers the events of rooms with a member in the namespace, in order, each once', async () => {
      r1 = await createRoom(alice);
      await send(alice, r1, 'before');
      // The pass that reads 'before' runs now, while nobody of the bridge is in the room.
      await s.hs.appServiceSender.idle();
      const joinId = (await joinRoom(r1, bridgeUser)).eventId;
      const sent: string[] = [];
      for (let i = 0; i < 5; i++) sent.push(await send(alice, r1, `m${i}`));
      await bridge.waitFor('m4', () => bridge.bodies().includes('m4'));
      const ids = bridge.events().map((e) => e.event_id);
      assert.deepEqual(ids, [joinId, ...sent], 'the join, then m0..m4, nothing before the join');
      assert.equal(new Set(ids).size, ids.length);
      const txnIds = bridge.received.map((t) => Number(t.txnId));
      assert.equal(new Set(txnIds).size, txnIds.length, 'distinct txn ids');
      assert.deepEqual(
        [...txnIds].sort((a, b) => a - b),
        txnIds,
        'increasing txn ids',
      );
      for (const t of bridge.received) assert.equal(t.authorization, 'Bearer hs_bridge');
      const ev = bridge.events().at(-1) as TxnEvent & { origin_server_ts?: number };
      assert.equal(ev.room_id, r1, 'client format with room_id');
      assert.equal(typeof ev.origin_server_ts, 'number');
      assert.equal(plain.received.length, 0, 'nothing for a service without interest');
    });

    it('matches a member event by state key, the sender, and a room alias', async () => {
      const r2 = await createRoom(alice);
      await s.hs.writer.send(r2, {
        type: 'm.room.member',
        sender: alice.userId,
        state_key: `@_plain_p:${s.serverName}`,
        content: { membership: 'invite' },
      });
      await plain.waitFor('the invite', () => plain.events().some((e) => e.type === 'm.room.member'));
      const inv = plain.events().find((e) => e.type === 'm.room.member') as TxnEvent;
      assert.equal(inv.state_key, `@_plain_p:${s.serverName}`);
      assert.equal(inv.content.membership, 'invite');
      await send(alice, r2, 'not for plain yet');

      // The sender: a service user talking in a room nobody else of the service is in.
      const r3 = await createRoom(alice);
      await joinRoom(r3, `@_plain_q:${s.serverName}`);
      await s.hs.writer.send(r3, {
        type: 'm.room.message',
        sender: `@_plain_q:${s.serverName}`,
        content: { msgtype: 'm.text', body: 'from q' },
      });
      await plain.waitFor('from q', () => plain.bodies().includes('from q'));
      assert.ok(!plain.bodies().includes('not for plain yet'), 'an invite is not membership');

      // An alias in the bridge's (non-exclusive) alias namespace.
      const r4 = await createRoom(alice);
      const alias = `#_bridge_r4:${s.serverName}`;
      const put = await alice.put(`/_matrix/client/v3/directory/room/${enc(alias)}`, { room_id: r4 });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      await send(alice, r4, 'aliased');
      await bridge.waitFor('aliased', () => bridge.bodies().includes('aliased'));
    });

    it('re-sends the same txn id with the same events while the service is down, then delivers all in order', async () => {
      bridge.mode = 'fail';
      const before = bridge.received.length;
      const sent: string[] = [];
      for (let i = 0; i < 20; i++) sent.push(await send(alice, r1, `down${i}`));
      await bridge.waitFor('a failed attempt', () =>
        bridge.received.slice(before).some((t) => t.status === 500),
      );
      // At least one retry while still down: the same id, the same events.
      await bridge.waitFor(
        'a retry',
        () => bridge.received.slice(before).filter((t) => t.status === 500).length >= 2,
      );
      const failed = bridge.received.slice(before).filter((t) => t.status === 500);
      const [first, second] = failed as [(typeof failed)[0], (typeof failed)[0]];
      assert.equal(second.txnId, first.txnId);
      assert.deepEqual(
        (second.body.events as TxnEvent[]).map((e) => e.event_id),
        (first.body.events as TxnEvent[]).map((e) => e.event_id),
      );
      bridge.mode = 'ok';
      await bridge.waitFor('down19', () => bridge.bodies().includes('down19'), 20_000);
      const okFirst = bridge.received.slice(before).find((t) => t.status === 200);
      assert.equal(okFirst?.txnId, first.txnId, 'the failed transaction is the next one acknowledged');
      const got = bridge.events().map((e) => e.event_id);
      assert.deepEqual(
        got.filter((id) => sent.includes(id)),
        sent,
        'every message once, in order',
      );
      assert.equal(new Set(got).size, got.length);
      assert.ok(Number(s.hs.appServiceSender.stats.failures.get('bridge')) >= 2);
    });

    it('sends typing, receipts and presence to a service that asks, not to one that does not', async () => {
      const typing = await alice.put(`/_matrix/client/v3/rooms/${enc(r1)}/typing/${enc(alice.userId)}`, {
        typing: true,
        timeout: 10_000,
      });
      assert.equal(typing.status, 200);
      const last = await send(alice, r1, 'read me');
      const receipt = await alice.post(`/_matrix/client/v3/rooms/${enc(r1)}/receipt/m.read/${enc(last)}`, {});
      assert.equal(receipt.status, 200, JSON.stringify(receipt.body));
      const ephemeral = () =>
        bridge
          .acknowledged()
          .flatMap((t) => (t.body.ephemeral as Record<string, unknown>[] | undefined) ?? []);
      await bridge.waitFor('typing and a receipt', () => {
        const e = ephemeral();
        return e.some((x) => x.type === 'm.typing') && e.some((x) => x.type === 'm.receipt');
      });
      const typingEv = ephemeral().find((x) => x.type === 'm.typing') as Record<string, unknown>;
      assert.equal(typingEv.room_id, r1);
      assert.deepEqual((typingEv.content as { user_ids: string[] }).user_ids, [alice.userId]);
      const receiptEv = ephemeral().find((x) => x.type === 'm.receipt') as Record<string, unknown>;
      assert.equal(receiptEv.room_id, r1);
      assert.ok(
        (receiptEv.content as Record<string, { 'm.read': Record<string, unknown> }>)[last]?.['m.read'][
          alice.userId
        ],
      );
      const withUnstable = bridge.acknowledged().find((t) => t.body.ephemeral !== undefined);
      assert.deepEqual(withUnstable?.body['de.sorunome.msc2409.ephemeral'], withUnstable?.body.ephemeral);

      // Presence of a user sharing a room with the bridge's user.
      const presence = await alice.put(`/_matrix/client/v3/presence/${enc(alice.userId)}/status`, {
        presence: 'online',
        status_msg: 'here',
      });
      assert.equal(presence.status, 200);
      await bridge.waitFor('presence', () =>
        ephemeral().some((x) => x.type === 'm.presence' && x.sender === alice.userId),
      );

      // plain: a service user in a room where alice types and talks; no ephemeral data at all.
      const r5 = await createRoom(alice);
      await joinRoom(r5, `@_plain_t:${s.serverName}`);
      await alice.put(`/_matrix/client/v3/rooms/${enc(r5)}/typing/${enc(alice.userId)}`, {
        typing: true,
        timeout: 10_000,
      });
      await send(alice, r5, 'plain sees this');
      await plain.waitFor('plain sees this', () => plain.bodies().includes('plain sees this'));
      for (const t of plain.received) {
        assert.equal(t.body.ephemeral, undefined);
        assert.equal(t.body['de.sorunome.msc2409.ephemeral'], undefined);
      }
    });

    it("delivers to-device messages to a service user's device once, with its key counts", async () => {
      await createAccount(s.hs.storage.db, {
        localpart: '_bridge_a',
        serverName: s.serverName,
        password: null,
      });
      await upsertDevice(s.hs.storage.db, bridgeUser, 'BRIDGEDEV', null, Date.now());
      const res = await alice.put(`/_matrix/client/v3/sendToDevice/m.test/td1`, {
        messages: { [bridgeUser]: { BRIDGEDEV: { hello: 'bridge' } } },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const toDevice = () =>
        bridge
          .acknowledged()
          .flatMap(
            (t) => (t.body['de.sorunome.msc2409.to_device'] as Record<string, unknown>[] | undefined) ?? [],
          );
      await bridge.waitFor('the to-device message', () => toDevice().length > 0);
      assert.deepEqual(toDevice(), [
        {
          type: 'm.test',
          sender: alice.userId,
          to_user_id: bridgeUser,
          to_device_id: 'BRIDGEDEV',
          content: { hello: 'bridge' },
        },
      ]);
      const txn = bridge.acknowledged().find((t) => t.body['de.sorunome.msc2409.to_device'] !== undefined);
      const counts = txn?.body['org.matrix.msc3202.device_one_time_keys_count'] as Record<string, unknown>;
      assert.deepEqual(counts[bridgeUser], { BRIDGEDEV: { signed_curve25519: 0 } });
      await s.hs.appServiceSender.idle();
      const left = await s.hs.storage.db
        .selectFrom('to_device_messages')
        .select('user_id')
        .where('user_id', '=', bridgeUser)
        .execute();
      assert.equal(left.length, 0, 'delivered once: no longer waiting in the inbox');
    });

    it('a service added later matches by room id and starts at the stream head', async () => {
      const dir = regDir;
      const files = s.hs.config.app_service_config_files;
      await s.stop();
      const rooms = new FakeAppService();
      await rooms.start();
      try {
        const escaped = r1.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        s = await startTestServer(
          engine,
          {
            presence: { enabled: true },
            app_service_config_files: [
              ...files,
              writeRegistration(dir, { id: 'rooms', url: rooms.url, rooms: [escaped] }),
            ],
          },
          { db: s.db, dataDir: s.dataDir },
        );
        alice.baseUrl = s.url;
        await send(alice, r1, 'after restart');
        await rooms.waitFor('after restart', () => rooms.bodies().includes('after restart'));
        assert.deepEqual(rooms.bodies(), ['after restart'], 'nothing from before it was registered');
        await bridge.waitFor('after restart (bridge)', () => bridge.bodies().includes('after restart'));
        const txnIds = bridge.received.map((t) => Number(t.txnId));
        assert.deepEqual(
          [...txnIds].sort((a, b) => a - b),
          txnIds,
          'ids keep increasing across a restart',
        );
      } finally {
        await rooms.stop();
      }
    });

    it("the online doctor knows the configured services: a removed service's queue is reported and repaired", async () => {
      await s.hs.storage.db
        .insertInto('appservice_state')
        .values({ as_id: 'gone', stream_pos: 0, last_txn_id: 0 })
        .execute();
      const admin = await s.user('doctor', { admin: true });
      const check = await admin.post('/_hearth/admin/v1/doctor', { repair: false });
      assert.equal(check.status, 200, JSON.stringify(check.body));
      const found = (check.body.problems as { kind: string; detail: string }[]).filter(
        (p) => p.kind === 'appservice_queue_invalid',
      );
      assert.equal(found.length, 1, JSON.stringify(found));
      assert.match(found[0]?.detail ?? '', /gone/);
      const repair = await admin.post('/_hearth/admin/v1/doctor', { repair: true });
      assert.equal(repair.status, 200, JSON.stringify(repair.body));
      assert.equal(repair.body.clean, true, JSON.stringify(repair.body.remaining));
      const rows = await s.hs.storage.db.selectFrom('appservice_state').select('as_id').execute();
      const ids = rows.map((r) => r.as_id);
      assert.ok(!ids.includes('gone') && ids.includes('bridge') && ids.includes('plain'), ids.join());
    });

    it('the doctor reports a position beyond the head and a removed service; repair fixes both', async () => {
      await s.stop();
      const storage = await openStorage(s.db.config);
      try {
        const head = storage.stream.current;
        await storage.db
          .updateTable('appservice_state')
          .set({ stream_pos: head + 1000 })
          .where('as_id', '=', 'bridge')
          .execute();
        const ids = ['bridge', 'rooms'];
        const found = (await runDoctor(storage, { appServiceIds: ids })).problems.filter(
          (p) => p.kind === 'appservice_queue_invalid',
        );
        assert.equal(found.length, 2, JSON.stringify(found));
        assert.ok(found.some((p) => p.detail.includes('bridge') && p.detail.includes('beyond the head')));
        assert.ok(found.some((p) => p.detail.includes('plain') && p.detail.includes('not a configured')));
        const repaired = await runDoctor(storage, { repair: true, appServiceIds: ids });
        assert.deepEqual(
          repaired.remaining.filter((p) => p.kind === 'appservice_queue_invalid'),
          [],
        );
        const rows = await storage.db.selectFrom('appservice_state').selectAll().orderBy('as_id').execute();
        assert.deepEqual(
          rows.map((r) => [r.as_id, Number(r.stream_pos)]),
          [
            ['bridge', head],
            ['rooms', Number(rows.find((r) => r.as_id === 'rooms')?.stream_pos)],
          ],
        );
      } finally {
        await storage.close();
      }
    });
  });
}
