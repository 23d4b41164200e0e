/**
 * The federation fan-out of a server alone (no other server's user joined to any room) reads nothing per stream
 * advance, and stops skipping as soon as that can change: a to-device message to another server's user is still
 * delivered, and after another server's user joins a room the next local event reaches that server. Every engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import { ScriptedRemote } from '../helpers/scripted-remote.js';
import { until } from '../helpers/until.js';
import type { Client } from '../helpers/server.js';

for (const engine of ENGINES) {
  describe(`${engine}: federation fan-out of a server alone`, () => {
    let a: FederatedServer;
    let remote: ScriptedRemote;
    let alice: Client & { userId: string };
    let roomId: string;

    /** Statements the server ran against `table` so far (its query timer). */
    async function selectsOf(table: string): Promise<number> {
      const text = await (await fetch(`${a.url}/_hearth/metrics`)).text();
      const re = new RegExp(
        `^hearth_db_query_duration_seconds_count\\{operation="select",table="${table}"\\} (\\d+)`,
        'm',
      );
      return Number(re.exec(text)?.[1] ?? 0);
    }

    async function send(body: string): Promise<void> {
      const res = await alice.put(
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${body}${Math.random()}`,
        { msgtype: 'm.text', body },
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }

    before(async () => {
      remote = new ScriptedRemote();
      await remote.start();
      a = await startFederatedServer(engine, { enable_metrics: true });
      alice = await a.user('alice');
      const res = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      roomId = res.body.room_id as string;
    });
    after(async () => {
      await a?.close();
      await remote?.stop();
    });

    it('reads no device-list changes per local event (a scrape reads the outbox, so that is not counted)', async () => {
      await send('settle');
      await a.hs.federation.sender.fanout.idle();
      const devices = await selectsOf('device_list_changes');
      for (let i = 0; i < 5; i++) await send(`alone ${i}`);
      await a.hs.federation.sender.fanout.idle();
      assert.equal(await selectsOf('device_list_changes'), devices);
      assert.equal(a.hs.federation.sender.fanout.position, a.hs.storage.stream.current);
    });

    it("still delivers a to-device message to another server's user", async () => {
      const bob = `@bob:${remote.serverName}`;
      const res = await alice.put('/_matrix/client/v3/sendToDevice/m.test/alone-1', {
        messages: { [bob]: { DEV: { hello: 'bob' } } },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await until(
        'the to-device EDU at the other server',
        () =>
          remote.txns.some((t) =>
            t.body.edus.some((e) => (e as { edu_type?: string }).edu_type === 'm.direct_to_device'),
          ) || undefined,
      );
    });

    it('sends the next local event to a server whose user joined (not alone any more)', async () => {
      await send('before the join');
      await a.hs.federation.sender.fanout.idle();
      const bob = `@bob:${remote.serverName}`;
      await a.hs.writer.send(roomId, {
        type: 'm.room.member',
        sender: bob,
        state_key: bob,
        content: { membership: 'join' },
      });
      await send('after the join');
      await until(
        'the event at the other server',
        () => remote.bodies().includes('after the join') || undefined,
      );
      assert.ok(!remote.bodies().includes('before the join'));
    });
  });
}
