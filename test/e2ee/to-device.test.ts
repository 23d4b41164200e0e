/** PUT /sendToDevice and the to_device section of /sync, on every engine. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { ok, sync, toDevice } from './helpers.js';

const PASSWORD = 'correct horse battery staple';

for (const engine of ENGINES) {
  describe(`${engine}: send-to-device`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('delivers in order, once per transaction id, to one or all devices, until acknowledged', async () => {
      const alice = await server.user('t_alice');
      const bob = await server.user('t_bob');
      const login = await ok(
        server.client().post('/_matrix/client/v3/login', {
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user: 't_bob' },
          password: PASSWORD,
        }),
      );
      const bob2 = server.client(login.access_token as string);
      const send = (txn: string, messages: Json) =>
        ok(alice.put(`/_matrix/client/v3/sendToDevice/m.test/${txn}`, { messages }));

      await send('t1', { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
      await send('t1', { [bob.userId]: { [bob.deviceId]: { n: 1 } } }); // a retry
      await send('t2', { [bob.userId]: { '*': { n: 2 } }, '@ghost:test.local': { X: { n: 0 } } });
      await send('t3', { [bob.userId]: { NODEVICE: { n: 0 }, [bob.deviceId]: { n: 3 } } });

      const first = await sync(bob);
      assert.deepEqual(
        toDevice(first).map((e) => [e.sender, e.type, (e.content as Json).n]),
        [
          [alice.userId, 'm.test', 1],
          [alice.userId, 'm.test', 2],
          [alice.userId, 'm.test', 3],
        ],
      );
      // Not acknowledged yet: an initial sync again (or a retry with the old token) gets them again.
      assert.equal(toDevice(await sync(bob)).length, 3);
      const other = await sync(bob2);
      assert.deepEqual(
        toDevice(other).map((e) => (e.content as Json).n),
        [2],
      );
      // Syncing from the token acknowledges them: they are deleted.
      const next = await sync(bob, first.next_batch as string);
      assert.deepEqual(toDevice(next), []);
      assert.deepEqual(toDevice(await sync(bob, first.next_batch as string)), []);
      const rows = await server.hs.storage.db
        .selectFrom('to_device_messages')
        .select('device_id')
        .where('user_id', '=', bob.userId)
        .execute();
      assert.deepEqual(
        rows.map((r) => r.device_id),
        [login.device_id],
      );
    });

    it('hands out at most 100 messages per sync, the rest in the next', async () => {
      const carol = await server.user('t_carol');
      const dan = await server.user('t_dan');
      const start = await sync(dan);
      for (let i = 0; i < 130; i++)
        await ok(
          carol.put(`/_matrix/client/v3/sendToDevice/m.test/n${i}`, {
            messages: { [dan.userId]: { [dan.deviceId]: { i } } },
          }),
        );
      const a = await sync(dan, start.next_batch as string);
      assert.equal(toDevice(a).length, 100);
      const b = await sync(dan, a.next_batch as string);
      const c = await sync(dan, b.next_batch as string);
      const all = [...toDevice(a), ...toDevice(b), ...toDevice(c)].map((e) => (e.content as Json).i);
      assert.deepEqual(
        all,
        Array.from({ length: 130 }, (_, i) => i),
      );
    });

    it('wakes a long-polling sync', async () => {
      const erin = await server.user('t_erin');
      const fay = await server.user('t_fay');
      const s = await sync(fay);
      const t0 = Date.now();
      const poll = fay.get(`/_matrix/client/v3/sync?since=${s.next_batch as string}&timeout=10000`);
      await new Promise((r) => setTimeout(r, 200));
      await ok(
        erin.put('/_matrix/client/v3/sendToDevice/m.ping/p1', {
          messages: { [fay.userId]: { [fay.deviceId]: { ping: true } } },
        }),
      );
      const res = await poll;
      assert.equal(res.status, 200);
      assert.ok(Date.now() - t0 < 5000);
      assert.equal(toDevice(res.body).length, 1);
    });

    it('refuses malformed bodies', async () => {
      const gus = await server.user('t_gus');
      const bad: unknown[] = [
        {},
        { messages: [] },
        { messages: { [gus.userId]: [] } },
        { messages: { [gus.userId]: { [gus.deviceId]: 'text' } } },
        { messages: { [gus.userId]: { [gus.deviceId]: [1] } } },
      ];
      for (const [i, body] of bad.entries()) {
        const res = await gus.put(`/_matrix/client/v3/sendToDevice/m.test/bad${i}`, body);
        assert.equal(res.status, 400, JSON.stringify(body));
      }
      const res = await gus.request('PUT', '/_matrix/client/v3/sendToDevice/m.test/raw', undefined, {
        raw: 'not json',
      });
      assert.equal(res.status, 400);
      assert.deepEqual(toDevice(await sync(gus)), []);
    });
  });
}
