/**
 * Transactions between two Hearths sharing a room (test/helpers/mirror-room.ts stands in for a join): typing,
 * receipts, presence, to-device messages and device-list changes cross in both directions and show up in the other server's
 * /sync; and the inbound /send checks: signed requests only, the body's origin, at most 50 PDUs and 100 EDUs,
 * retried transactions answered once, EDUs speaking for another server's users ignored. Keys, profiles and aliases
 * of the other server's users through the client API. Every engine.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FederationError } from '../../src/federation/client.js';
import { openStorage } from '../../src/storage/db.js';
import { pruneReceivedTxns } from '../../src/storage/federation-queue.js';
import { ENGINES, freshDatabase } from '../helpers/engines.js';
import { freePort, startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import { mirrorRoom } from '../helpers/mirror-room.js';
import type { Client, Json } from '../helpers/server.js';
import { until } from '../helpers/until.js';

type User = Client & { userId: string; deviceId: string };

async function sync(user: Client, since?: string): Promise<Json> {
  const q = since ? `?since=${encodeURIComponent(since)}&timeout=0` : '?timeout=0';
  const res = await user.get(`/_matrix/client/v3/sync${q}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

function ephemeralOf(body: Json, roomId: string): Json[] {
  const rooms = (body.rooms as { join?: Record<string, { ephemeral?: { events?: Json[] } }> } | undefined)
    ?.join;
  return rooms?.[roomId]?.ephemeral?.events ?? [];
}

for (const engine of ENGINES) {
  describe(`${engine}: federation transactions between two Hearths`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let alice: User;
    let bob: User;
    let roomId: string;
    let eventId: string;

    before(async () => {
      const portB = await freePort();
      const bName = `127.0.0.1:${portB}`;
      const dbB = await freshDatabase(engine);
      const dataDirB = mkdtempSync(join(tmpdir(), 'hearth-data-'));
      a = await startFederatedServer(engine);
      alice = await a.user('alice');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      assert.equal(created.status, 200);
      roomId = created.body.room_id as string;
      const bobId = `@bob:${bName}`;
      await a.hs.writer.send(roomId, {
        type: 'm.room.member',
        sender: bobId,
        state_key: bobId,
        content: { membership: 'join' },
      });
      const sent = await alice.put(
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t0`,
        {
          msgtype: 'm.text',
          body: 'hello',
        },
      );
      eventId = sent.body.event_id as string;
      const storageB = await openStorage(dbB.config);
      await mirrorRoom(a.hs.storage, storageB, roomId);
      await storageB.close();
      b = await startFederatedServer(engine, {}, { db: dbB, dataDir: dataDirB, federationPort: portB });
      bob = await b.user('bob');
      assert.equal(bob.userId, bobId);
      // A's first transaction to B (alice's message) failed before B started: end that backoff, so typing (which
      // is not queued for a server in backoff) goes out at once.
      a.hs.federation.sender.remoteIsUp(b.serverName);
      await until('A to B healthy', async () => (a.hs.federation.sender.backingOff === 0 ? true : undefined));
      await a.hs.federation.sender.idle();
    });
    after(async () => {
      await Promise.all([a, b].map((s) => s?.close()));
    });

    /** The message bodies of the room's timeline in a fresh sync of `user` (last 50 events). */
    async function bodies(user: Client): Promise<string[]> {
      const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 50 } } }));
      const res = await user.get(`/_matrix/client/v3/sync?timeout=0&filter=${filter}`);
      assert.equal(res.status, 200);
      const room = (res.body.rooms as { join?: Record<string, { timeline: { events: Json[] } }> }).join?.[
        roomId
      ];
      return (room?.timeline.events ?? [])
        .filter((e) => e.type === 'm.room.message')
        .map((e) => (e.content as { body: string }).body);
    }

    async function say(user: Client, body: string): Promise<void> {
      const res = await user.put(
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${encodeURIComponent(body)}`,
        { msgtype: 'm.text', body },
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }

    it('delivers events both ways through the room writer', async () => {
      for (const body of ['a1', 'a2', 'a3']) await say(alice, body);
      await until('a1-a3 on B', async () => ((await bodies(bob)).includes('a3') ? true : undefined));
      assert.deepEqual((await bodies(bob)).slice(-3), ['a1', 'a2', 'a3']);
      await say(bob, 'b1');
      await until('b1 on A', async () => ((await bodies(alice)).includes('b1') ? true : undefined));
      assert.deepEqual((await bodies(alice)).slice(-4), ['a1', 'a2', 'a3', 'b1']);
    });

    it('delivers every event exactly once, in order, after the other server was down', async () => {
      const reuse = { db: b.db, dataDir: b.dataDir, federationPort: b.federationPort };
      await b.stop();
      for (const body of ['d1', 'd2', 'd3', 'd4']) await say(alice, body);
      await until('A backing off', async () => (a.hs.federation.sender.backingOff > 0 ? true : undefined));
      b = await startFederatedServer(engine, {}, reuse);
      bob.baseUrl = b.url;
      a.hs.federation.sender.remoteIsUp(b.serverName);
      await until('d4 on B', async () => ((await bodies(bob)).includes('d4') ? true : undefined));
      await a.hs.federation.sender.idle();
      const got = await bodies(bob);
      assert.deepEqual(got.slice(-4), ['d1', 'd2', 'd3', 'd4']);
      assert.equal(got.filter((x) => x.startsWith('d')).length, 4);
    });

    it('relays typing both ways', async () => {
      const start = await sync(bob);
      const res = await alice.put(
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(alice.userId)}`,
        { typing: true, timeout: 30_000 },
      );
      assert.equal(res.status, 200);
      const typing = await until('alice typing on B', async () => {
        const events = ephemeralOf(await sync(bob, start.next_batch as string), roomId);
        return events.find((e) => e.type === 'm.typing');
      });
      assert.deepEqual((typing.content as { user_ids: string[] }).user_ids, [alice.userId]);

      const startA = await sync(alice);
      await bob.put(
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(bob.userId)}`,
        { typing: true, timeout: 30_000 },
      );
      await until('bob typing on A', async () => {
        const events = ephemeralOf(await sync(alice, startA.next_batch as string), roomId);
        const t = events.find((e) => e.type === 'm.typing');
        return (t?.content as { user_ids?: string[] } | undefined)?.user_ids?.includes(bob.userId)
          ? t
          : undefined;
      });
    });

    it('relays read receipts', async () => {
      const startA = await sync(alice);
      const res = await bob.post(
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`,
        {},
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const receipt = await until('bob receipt on A', async () => {
        const events = ephemeralOf(await sync(alice, startA.next_batch as string), roomId);
        return events.find((e) => e.type === 'm.receipt');
      });
      const content = receipt.content as Record<string, { 'm.read': Record<string, { ts: number }> }>;
      assert.equal(typeof content[eventId]?.['m.read'][bob.userId]?.ts, 'number');
    });

    it('relays presence', async () => {
      const start = await sync(alice);
      const res = await bob.put(`/_matrix/client/v3/presence/${encodeURIComponent(bob.userId)}/status`, {
        presence: 'unavailable',
        status_msg: 'away on B',
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const event = await until('bob presence on A', async () => {
        const body = await sync(alice, start.next_batch as string);
        const events = (body.presence as { events?: Json[] } | undefined)?.events ?? [];
        return events.find(
          (e) => e.sender === bob.userId && (e.content as { status_msg?: string }).status_msg === 'away on B',
        );
      });
      assert.equal((event.content as { presence: string }).presence, 'unavailable');
    });

    it('delivers to-device messages to remote devices', async () => {
      const start = await sync(bob);
      const res = await alice.put('/_matrix/client/v3/sendToDevice/m.test/txn1', {
        messages: { [bob.userId]: { [bob.deviceId]: { hello: 'bob' } } },
      });
      assert.equal(res.status, 200);
      const msg = await until('the to-device message on B', async () => {
        const body = await sync(bob, start.next_batch as string);
        return (body.to_device as { events: Json[] } | undefined)?.events.find((e) => e.type === 'm.test');
      });
      assert.equal(msg.sender, alice.userId);
      assert.deepEqual(msg.content, { hello: 'bob' });
    });

    it('tells the other server of device-list changes', async () => {
      const start = await sync(alice);
      const res = await bob.post('/_matrix/client/v3/keys/upload', {
        device_keys: {
          user_id: bob.userId,
          device_id: bob.deviceId,
          algorithms: ['m.olm.v1.curve25519-aes-sha2'],
          keys: { [`curve25519:${bob.deviceId}`]: 'key', [`ed25519:${bob.deviceId}`]: 'key' },
          signatures: { [bob.userId]: { [`ed25519:${bob.deviceId}`]: 'sig' } },
        },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await until('bob in device_lists.changed on A', async () => {
        const body = await sync(alice, start.next_batch as string);
        const changed = (body.device_lists as { changed?: string[] } | undefined)?.changed ?? [];
        return changed.includes(bob.userId) ? true : undefined;
      });
    });

    it("queries and claims keys of the other server's users, listing unreachable servers in failures", async () => {
      const up = await bob.post('/_matrix/client/v3/keys/upload', {
        one_time_keys: { 'signed_curve25519:AAAAHg': { key: 'otk', signatures: {} } },
      });
      assert.equal(up.status, 200, JSON.stringify(up.body));
      const unreachable = '@nobody:127.0.0.1:1';
      const q = await alice.post('/_matrix/client/v3/keys/query', {
        device_keys: { [bob.userId]: [], [unreachable]: [] },
        timeout: 5_000,
      });
      assert.equal(q.status, 200, JSON.stringify(q.body));
      const devices = (q.body.device_keys as Record<string, Record<string, Json>>)[bob.userId];
      assert.equal(devices?.[bob.deviceId]?.device_id, bob.deviceId);
      const failures = q.body.failures as Record<string, { status: number }>;
      assert.equal(typeof failures['127.0.0.1:1']?.status, 'number');
      assert.equal(failures[b.serverName], undefined);

      const c = await alice.post('/_matrix/client/v3/keys/claim', {
        one_time_keys: { [bob.userId]: { [bob.deviceId]: 'signed_curve25519' } },
      });
      assert.equal(c.status, 200, JSON.stringify(c.body));
      const claimed = (c.body.one_time_keys as Record<string, Record<string, Json>>)[bob.userId]?.[
        bob.deviceId
      ];
      assert.deepEqual(claimed, { 'signed_curve25519:AAAAHg': { key: 'otk', signatures: {} } });
      // Claimed once: the key is gone.
      const again = await alice.post('/_matrix/client/v3/keys/claim', {
        one_time_keys: { [bob.userId]: { [bob.deviceId]: 'signed_curve25519' } },
      });
      assert.deepEqual(again.body.one_time_keys, {});

      const list = await a.hs.federation.client.get(
        b.serverName,
        `/_matrix/federation/v1/user/devices/${encodeURIComponent(bob.userId)}`,
      );
      const body = list.body as {
        user_id: string;
        stream_id: number;
        devices: { device_id: string; keys?: Json }[];
      };
      assert.equal(body.user_id, bob.userId);
      assert.ok(body.stream_id > 0);
      assert.equal(body.devices.find((d) => d.device_id === bob.deviceId)?.keys?.device_id, bob.deviceId);
      // `keys` is required: devices without uploaded keys are not listed (Synapse reads `keys` of every device).
      assert.ok(body.devices.every((d) => d.keys !== undefined));
      const other = await a.hs.federation.client
        .get(b.serverName, `/_matrix/federation/v1/user/devices/${encodeURIComponent(alice.userId)}`)
        .catch((err: unknown) => err);
      assert.ok(other instanceof FederationError && other.status === 403);
    });

    it("resolves the other server's profiles and room aliases", async () => {
      const set = await bob.put(`/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}/displayname`, {
        displayname: 'Bob on B',
      });
      assert.equal(set.status, 200);
      const profile = await alice.get(`/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}`);
      assert.equal(profile.status, 200, JSON.stringify(profile.body));
      assert.deepEqual(profile.body, { displayname: 'Bob on B' });
      const name = await alice.get(
        `/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}/displayname`,
      );
      assert.deepEqual(name.body, { displayname: 'Bob on B' });
      const avatar = await alice.get(
        `/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}/avatar_url`,
      );
      assert.equal(avatar.status, 404);
      const nobody = `@nobody:${b.serverName}`;
      assert.equal((await alice.get(`/_matrix/client/v3/profile/${encodeURIComponent(nobody)}`)).status, 404);

      const alias = `#shared:${b.serverName}`;
      const made = await bob.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, {
        room_id: roomId,
      });
      assert.equal(made.status, 200, JSON.stringify(made.body));
      const resolved = await alice.get(`/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`);
      assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
      assert.deepEqual(resolved.body, { room_id: roomId, servers: [b.serverName, a.serverName] });
      const unknown = await alice.get(
        `/_matrix/client/v3/directory/room/${encodeURIComponent(`#unknown:${b.serverName}`)}`,
      );
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
    });

    describe('PUT /send checks', () => {
      const put = (txnId: string, body: unknown): Promise<unknown> =>
        a.hs.federation.client
          .put(b.serverName, `/_matrix/federation/v1/send/${txnId}`, body)
          .then((r) => r.body);
      const status = (p: Promise<unknown>): Promise<number | undefined> =>
        p.then(
          () => 200,
          (err: unknown) => (err instanceof FederationError ? err.status : undefined),
        );

      it('refuses more than 50 PDUs or 100 EDUs', async () => {
        const pdus = Array.from({ length: 51 }, () => ({}));
        assert.equal(await status(put('big1', { origin: a.serverName, origin_server_ts: 1, pdus })), 400);
        const edus = Array.from({ length: 101 }, () => ({ edu_type: 'm.x', content: {} }));
        assert.equal(
          await status(put('big2', { origin: a.serverName, origin_server_ts: 1, pdus: [], edus })),
          400,
        );
        assert.equal(await status(put('nopdus', { origin: a.serverName, origin_server_ts: 1 })), 400);
      });

      it('refuses a body naming another origin, and unsigned requests', async () => {
        assert.equal(
          await status(put('other', { origin: 'evil.example', origin_server_ts: 1, pdus: [] })),
          403,
        );
        const res = await fetch(`${b.federationUrl}/_matrix/federation/v1/send/x`, {
          method: 'PUT',
          body: '{"pdus":[]}',
          headers: { 'content-type': 'application/json' },
        }).catch(() => undefined);
        // Node's fetch refuses the self-signed certificate; the auth test covers unsigned requests over TLS.
        if (res) assert.equal(res.status, 401);
      });

      it("answers a retried transaction once, and ignores EDUs for other servers' users", async () => {
        const start = await sync(bob);
        const edu = {
          edu_type: 'm.direct_to_device',
          content: {
            sender: alice.userId,
            type: 'm.dedupe',
            message_id: 'm1',
            messages: { [bob.userId]: { '*': { n: 1 } } },
          },
        };
        const forged = {
          edu_type: 'm.direct_to_device',
          content: {
            sender: bob.userId,
            type: 'm.forged',
            message_id: 'm2',
            messages: { [bob.userId]: { '*': { n: 2 } } },
          },
        };
        const body = { origin: a.serverName, origin_server_ts: 1, pdus: [], edus: [edu, forged] };
        assert.deepEqual(await put('retry1', body), { pdus: {} });
        assert.deepEqual(await put('retry1', body), { pdus: {} });
        // A new transaction carrying the same message id is not delivered again either.
        assert.deepEqual(await put('retry2', body), { pdus: {} });
        await until('the message', async () => {
          const s = await sync(bob, start.next_batch as string);
          const events = (s.to_device as { events: Json[] } | undefined)?.events ?? [];
          if (!events.some((e) => e.type === 'm.dedupe')) return undefined;
          assert.equal(events.filter((e) => e.type === 'm.dedupe').length, 1);
          assert.equal(events.filter((e) => e.type === 'm.forged').length, 0);
          return true;
        });
      });

      it('forgets received transactions and to-device message ids after a day', async () => {
        const db = b.hs.storage.db;
        assert.ok((await db.selectFrom('federation_received_txns').selectAll().execute()).length > 0);
        await db.updateTable('federation_received_txns').set({ received_ts: 1 }).execute();
        await db.updateTable('federation_received_to_device').set({ received_ts: 1 }).execute();
        await pruneReceivedTxns(db, Date.now() - 24 * 60 * 60 * 1000);
        assert.deepEqual(await db.selectFrom('federation_received_txns').selectAll().execute(), []);
        assert.deepEqual(await db.selectFrom('federation_received_to_device').selectAll().execute(), []);
      });

      it('accepts a transaction larger than a client request body', async () => {
        const big = { edu_type: 'org.example.ignored', content: { blob: 'x'.repeat(3 * 1024 * 1024) } };
        const body = { origin: a.serverName, origin_server_ts: 1, pdus: [], edus: [big] };
        assert.deepEqual(await put('big-body', body), { pdus: {} });
      });

      it('answers every PDU with its result', async () => {
        const res = (await put('pdu1', {
          origin: a.serverName,
          origin_server_ts: 1,
          pdus: [{ event_id: '$legacy:x', room_id: roomId, type: 'm.room.message' }],
        })) as { pdus: Record<string, { error?: string }> };
        for (const r of Object.values(res.pdus)) assert.equal(typeof r.error, 'string');
      });
    });
  });
}
