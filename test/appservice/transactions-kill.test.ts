/**
 * SIGKILL with an application service queue: Hearth in a child process, a local user talking in a room with a bridge
 * user, a fake service that alternately accepts and refuses transactions, the server killed at random moments.
 * Afterwards every message acknowledged to the client reached the service once (transactions deduplicated by id, as
 * the spec asks of a service), in the order sent; a txn id re-sent after a kill carries the same events. Every engine.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { Client, startTestServer, type TestServer } from '../helpers/server.js';
import { writeConfig } from '../integrity/util.js';
import { FakeAppService, writeRegistration, type TxnEvent } from './transactions-helpers.js';
import { kill, startChild } from '../integrity/child-harness.js';

const CYCLES = 3;

for (const engine of ENGINES) {
  describe(`${engine}: SIGKILL with a non-empty application service queue`, () => {
    const fake = new FakeAppService();
    const regDir = mkdtempSync(join(tmpdir(), 'hearth-as-kill-'));
    let s: TestServer | undefined;
    after(async () => {
      await fake.stop();
      await s?.close();
      rmSync(regDir, { recursive: true, force: true });
    });

    it(`${CYCLES} kill cycles: every acknowledged message delivered once, in order`, async () => {
      await fake.start();
      const reg = writeRegistration(regDir, { id: 'bridge', url: fake.url, users: ['@_bridge_.*'] });
      s = await startTestServer(engine, { app_service_config_files: [reg] });
      const alice = await s.user('alice');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const roomId = created.body.room_id as string;
      const bridgeUser = `@_bridge_a:${s.serverName}`;
      await s.hs.writer.send(roomId, {
        type: 'm.room.member',
        sender: bridgeUser,
        state_key: bridgeUser,
        content: { membership: 'join' },
      });
      await s.stop();
      const config = writeConfig(s, { app_service_config_files: [reg], rate_limiting: { enabled: false } });

      const acknowledged: string[] = [];
      let n = 0;
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        fake.mode = cycle % 2 === 0 ? 'ok' : 'fail';
        const { child, url } = await startChild(config);
        const client = new Client(url, alice.token);
        let killed = false;
        const started = Date.now();
        const sending = (async () => {
          while (!killed) {
            const body = `k${n++}`;
            const res = await client
              .put(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${body}`, {
                msgtype: 'm.text',
                body,
              })
              .catch(() => undefined);
            if (res?.status === 200) acknowledged.push(body);
          }
        })();
        // Killed at a random moment once the child has acknowledged something in this cycle.
        const start = acknowledged.length;
        while (acknowledged.length === start && Date.now() - started < 10_000)
          await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, Math.random() * 400));
        killed = true;
        await kill(child);
        await sending;
      }

      fake.mode = 'ok';
      const { child } = await startChild(config);
      try {
        await fake.waitFor(
          'every acknowledged message',
          () => {
            const got = new Set(fake.bodies());
            return acknowledged.every((b) => got.has(b));
          },
          30_000,
        );
      } finally {
        await kill(child);
      }
      assert.ok(acknowledged.length >= CYCLES, `only ${acknowledged.length} messages acknowledged`);
      const bodies = fake.bodies();
      assert.equal(new Set(bodies).size, bodies.length, 'no message in two different transactions');
      assert.deepEqual(
        bodies.filter((b) => acknowledged.includes(b)),
        acknowledged,
        'delivered in the order sent',
      );
      // A txn id sent more than once (refused, or cut by a kill) carries the same events each time.
      const byId = new Map<string, string>();
      for (const t of fake.received) {
        const ids = JSON.stringify((t.body.events as TxnEvent[]).map((e) => e.event_id));
        const before = byId.get(t.txnId);
        if (before !== undefined) assert.equal(ids, before, `txn ${t.txnId} re-sent with other events`);
        byId.set(t.txnId, ids);
      }
      const firstSeen = [...byId.keys()].map(Number);
      assert.deepEqual(
        [...firstSeen].sort((a, b) => a - b),
        firstSeen,
        'txn ids increase',
      );
      assert.ok(
        fake.received.some((t) => t.status === 500),
        'the service was down at some point',
      );
    });
  });
}
