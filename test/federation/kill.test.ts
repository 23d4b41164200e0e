/**
 * SIGKILL with a non-empty outbound queue: a federating Hearth in a child process sends messages into a room shared
 * with a scripted destination (that alternately accepts and refuses transactions) and is killed at random moments.
 * Afterwards every message acknowledged to the client reaches the destination, in the order it was sent; a message
 * is delivered twice only when a kill cut the transaction that carried it (the receiver dedupes by event id).
 * Every engine.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { openStorage } from '../../src/storage/db.js';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import { ScriptedRemote } from '../helpers/scripted-remote.js';
import { Client } from '../helpers/server.js';
import { writeConfig } from '../integrity/util.js';
import { kill, startChild } from '../integrity/child-harness.js';

const CYCLES = 5;

for (const engine of ENGINES) {
  describe(`${engine}: SIGKILL with a non-empty federation queue`, () => {
    let a: FederatedServer | undefined;
    const remote = new ScriptedRemote();
    after(async () => {
      await remote.stop().catch(() => undefined);
      await a?.close();
    });

    it(`${CYCLES} kill cycles lose no acknowledged event`, async () => {
      await remote.start();
      // Setup in process: alice, her room, and a member on the destination (a join over federation stand-in).
      a = await startFederatedServer(engine);
      const alice = await a.user('alice');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const roomId = created.body.room_id as string;
      const bob = `@bob:${remote.serverName}`;
      await a.hs.writer.send(roomId, {
        type: 'm.room.member',
        sender: bob,
        state_key: bob,
        content: { membership: 'join' },
      });
      await a.stop();
      const config = writeConfig(a, {
        listeners: [
          { port: 0, bind_addresses: ['127.0.0.1'] },
          {
            port: a.federationPort,
            bind_addresses: ['127.0.0.1'],
            tls: true,
            resources: [{ names: ['federation'] }],
          },
        ],
        federation_verify_certificates: false,
        ip_range_whitelist: ['127.0.0.1/32'],
        tls_certificate_path: a.hs.config.tls_certificate_path,
        tls_private_key_path: a.hs.config.tls_private_key_path,
        rate_limiting: { enabled: false },
      });

      const acknowledged: string[] = [];
      let n = 0;
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        remote.mode = cycle % 2 === 0 ? 'ok' : 'fail';
        const { child, url } = await startChild(config);
        const client = new Client(url, alice.token);
        let killed = false;
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
        // Kill at a random moment once the server is taking sends (a loaded machine may take a while to start).
        const ackedBefore = acknowledged.length;
        const waitUntil = Date.now() + 15_000;
        while (acknowledged.length === ackedBefore && Date.now() < waitUntil)
          await new Promise((r) => setTimeout(r, 20));
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 350));
        killed = true;
        await kill(child);
        await sending;
      }

      // The destination is back; its backoff (not what is tested here) is cleared so the last start sends at once.
      remote.mode = 'ok';
      const storage = await openStorage(a.db.config);
      await storage.db.deleteFrom('federation_destinations').execute();
      await storage.close();
      const { child } = await startChild(config);
      try {
        const end = Date.now() + 30_000;
        const received = (): Set<string> => new Set(remote.bodies());
        while ([...acknowledged].some((b) => !received().has(b))) {
          if (Date.now() > end) {
            const missing = acknowledged.filter((b) => !received().has(b));
            assert.fail(`never delivered: ${missing.join(', ')}`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        await kill(child);
      }
      assert.ok(acknowledged.length >= CYCLES, `only ${acknowledged.length} messages acknowledged`);
      const firstSeen: string[] = [];
      const seen = new Set<string>();
      for (const b of remote.bodies()) {
        if (seen.has(b)) continue;
        seen.add(b);
        firstSeen.push(b);
      }
      const order = firstSeen.filter((b) => acknowledged.includes(b));
      assert.deepEqual(order, acknowledged, 'delivered in the order sent');
      const duplicates = remote.bodies().length - seen.size;
      assert.ok(duplicates <= 50 * CYCLES, `${duplicates} duplicate deliveries`);
    });
  });
}
