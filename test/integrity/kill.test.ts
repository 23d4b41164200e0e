/**
 * Crash safety: a client drives messages, state changes and receipts at full speed while the server (a child
 * process) is killed with SIGKILL at random moments. After every kill the doctor finds the database clean; after
 * every restart the requests that were in flight are retried with their txnId; at the end every request that got
 * a 2xx is readable through /messages, and no retried transaction produced a second event.
 *
 * Beside them, to-device messages go to a second user's device, which syncs throughout (advancing its since token
 * only after processing a response, as a client does) and drains after every restart: every to-device message
 * whose PUT got a 2xx (or was retried with its txnId to a 2xx) is delivered exactly once over the whole run. Read
 * receipts are sent one at a time, each on an event later than the last: after every restart the user's m.read
 * receipt in an initial /sync is the last acknowledged one, or the one in flight at the kill.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createAccount } from '../../src/accounts/register.js';
import { runDoctor } from '../../src/integrity/doctor.js';
import { openStorage } from '../../src/storage/db.js';
import { ENGINES, freshDatabase, type TestDatabase } from '../helpers/engines.js';
import { Client, type Json, type Response, type TestServer } from '../helpers/server.js';
import { allMessages, enc, readReceiptOf, writeConfig } from './util.js';
import { kill, startChild } from './child-harness.js';

const CYCLES: Record<string, number> = { sqlite: 20, postgres: 10 };
const TD_TYPE = 'org.hearth.kill';

for (const engine of ENGINES) {
  describe(`${engine}: SIGKILL at random moments`, () => {
    let db: TestDatabase;
    const dataDir = mkdtempSync(join(tmpdir(), 'hearth-kill-'));
    after(async () => {
      await db?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it(`${CYCLES[engine]} kill cycles lose nothing acknowledged and duplicate nothing`, async () => {
      db = await freshDatabase(engine);
      const config = writeConfig({ db, dataDir, serverName: 'test.local' } as TestServer, {
        rate_limiting: { enabled: false },
      });
      const setup = await openStorage(db.config);
      for (const localpart of ['k', 'r']) {
        await createAccount(setup.db, {
          localpart,
          serverName: 'test.local',
          password: 'pw-pw-pw-pw',
          admin: false,
        });
      }
      await setup.close();

      let { child, url } = await startChild(config);
      const login = async (c: Client, user: string): Promise<string> => {
        const res = await c.post('/_matrix/client/v3/login', {
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user },
          password: 'pw-pw-pw-pw',
        });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        c.token = res.body.access_token as string;
        return res.body.device_id as string;
      };
      const client = new Client(url);
      await login(client, 'k');
      const room = (await client.post('/_matrix/client/v3/createRoom', {})).body.room_id as string;
      const rid = enc(room);

      // The to-device receiver: @r's device, syncing as a client does.
      const receiver = new Client(url);
      const rUser = '@r:test.local';
      const rDevice = await login(receiver, 'r');
      const delivered = new Map<number, number>(); // to-device counter -> times delivered
      let since: string | undefined;
      /** One /sync of the receiving device; its to-device messages are counted, then `since` advances. */
      const receive = async (timeout: number): Promise<number> => {
        const res = await receiver.get(
          `/_matrix/client/v3/sync?timeout=${timeout}${since ? `&since=${enc(since)}` : ''}`,
        );
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const events = ((res.body.to_device as Json | undefined)?.events ?? []) as Json[];
        for (const e of events) {
          if (e.type !== TD_TYPE) continue;
          const k = (e.content as Json).n as number;
          delivered.set(k, (delivered.get(k) ?? 0) + 1);
        }
        since = res.body.next_batch as string;
        return events.length;
      };
      await receive(0);

      const acked = new Map<string, string>(); // txnId or state key -> event id
      const inFlight = new Set<string>();
      const tdAcked = new Set<number>(); // to-device counters whose PUT got a 2xx
      const tdInFlight = new Set<number>();
      const unexpected: string[] = []; // non-2xx answers to the new requests
      let n = 0;
      let td = 0;
      let receiptBusy = false;
      let receiptsSeen = 0; // restarts after which a receipt was there to check
      let receiptsInFlight = 0; // restarts with a receipt in flight at the kill
      let tdRetried = 0; // unanswered to-device PUTs retried after a restart
      let receiptAcked: string | undefined; // event id of the last m.read receipt that got a 2xx
      let receiptInFlight: string | undefined; // event id of the receipt sent without an answer yet
      let alive = true;
      const sendMessage = async (txn: string): Promise<string | undefined> => {
        inFlight.add(txn);
        const res = await client.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/${txn}`, {
          msgtype: 'm.text',
          body: txn,
        });
        if (res.status !== 200) return undefined;
        acked.set(txn, res.body.event_id as string);
        inFlight.delete(txn);
        return res.body.event_id as string;
      };
      const sendToDevice = (k: number): Promise<Response> =>
        client.put(`/_matrix/client/v3/sendToDevice/${TD_TYPE}/d${k}`, {
          messages: { [rUser]: { [rDevice]: { n: k } } },
        });
      const worker = async (): Promise<void> => {
        while (alive) {
          const i = n++;
          const txn = `t${i}`;
          try {
            if (i % 5 === 4) {
              const res = await client.put(`/_matrix/client/v3/rooms/${rid}/state/m.room.topic`, {
                topic: txn,
              });
              if (res.status === 200) acked.set(`state-${txn}`, res.body.event_id as string);
            } else if (i % 7 === 6 && !receiptBusy) {
              // One receipt at a time, each on an event acknowledged after the previous receipt was: receipts
              // only move forward, so every acknowledged one is then the newest.
              receiptBusy = true;
              try {
                const eventId = await sendMessage(txn);
                if (eventId) {
                  receiptInFlight = eventId;
                  const res = await client.post(
                    `/_matrix/client/v3/rooms/${rid}/receipt/m.read/${enc(eventId)}`,
                    {},
                  );
                  if (res.status === 200) {
                    receiptAcked = eventId;
                    receiptInFlight = undefined;
                  } else unexpected.push(`receipt: ${res.status} ${JSON.stringify(res.body)}`);
                }
              } finally {
                receiptBusy = false;
              }
            } else if (i % 3 === 1) {
              const k = td++;
              tdInFlight.add(k);
              const res = await sendToDevice(k);
              if (res.status === 200) {
                tdAcked.add(k);
                tdInFlight.delete(k);
              } else unexpected.push(`sendToDevice d${k}: ${res.status} ${JSON.stringify(res.body)}`);
            } else {
              await sendMessage(txn);
            }
          } catch {
            return; // the server is gone
          }
        }
      };
      const receiving = async (): Promise<void> => {
        while (alive) {
          try {
            await receive(1000);
          } catch (err) {
            if (err instanceof assert.AssertionError) unexpected.push(err.message);
            return; // the server is gone
          }
        }
      };

      const started = Date.now();
      for (let cycle = 0; cycle < (CYCLES[engine] as number); cycle++) {
        alive = true;
        const workers = [worker(), worker(), worker(), receiving()];
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 300));
        await kill(child);
        alive = false;
        await Promise.all(workers);
        assert.deepEqual(unexpected, [], `cycle ${cycle}`);

        const storage = await openStorage(db.config);
        try {
          const report = await runDoctor(storage);
          assert.deepEqual(report.problems, [], `cycle ${cycle}: ${JSON.stringify(report.problems)}`);
        } finally {
          await storage.close();
        }

        ({ child, url } = await startChild(config));
        client.baseUrl = url;
        receiver.baseUrl = url;

        // The last acknowledged receipt survived, or the one in flight landed; a client then retries the latter.
        const seen = await readReceiptOf(client, room, '@k:test.local');
        const allowed = [receiptAcked, receiptInFlight];
        if (seen !== undefined) receiptsSeen++;
        if (receiptInFlight) receiptsInFlight++;
        assert.ok(
          allowed.includes(seen),
          `cycle ${cycle}: m.read receipt is ${seen}, expected ${receiptAcked}` +
            (receiptInFlight ? ` or ${receiptInFlight} (in flight)` : ''),
        );
        if (receiptInFlight) {
          const res = await client.post(
            `/_matrix/client/v3/rooms/${rid}/receipt/m.read/${enc(receiptInFlight)}`,
            {},
          );
          assert.equal(res.status, 200, JSON.stringify(res.body));
          receiptAcked = receiptInFlight;
          receiptInFlight = undefined;
        }

        for (const txn of [...inFlight]) {
          const res = await client.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/${txn}`, {
            msgtype: 'm.text',
            body: txn,
          });
          assert.equal(res.status, 200, JSON.stringify(res.body));
          acked.set(txn, res.body.event_id as string);
          inFlight.delete(txn);
        }
        // A retry of an acknowledged transaction answers with the first event.
        const [someTxn, someId] = [...acked].find(([k]) => !k.startsWith('state-')) ?? [];
        if (someTxn) {
          const res = await client.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/${someTxn}`, {
            msgtype: 'm.text',
            body: someTxn,
          });
          assert.equal(res.body.event_id, someId);
        }

        // To-device: retry the unanswered PUTs and one answered one with their txnIds, then drain the device.
        const [someTd] = tdAcked;
        tdRetried += tdInFlight.size;
        for (const k of [...tdInFlight, ...(someTd === undefined ? [] : [someTd])]) {
          const res = await sendToDevice(k);
          assert.equal(res.status, 200, JSON.stringify(res.body));
          tdAcked.add(k);
          tdInFlight.delete(k);
        }
        while ((await receive(0)) > 0);
        for (const k of tdAcked) {
          assert.equal(
            delivered.get(k),
            1,
            `cycle ${cycle}: to-device d${k} delivered ${delivered.get(k) ?? 0} times`,
          );
        }
        for (const [k, times] of delivered)
          assert.equal(times, 1, `cycle ${cycle}: to-device d${k} delivered ${times} times`);
      }
      const events = await allMessages(client, room);
      const ids = new Set(events.map((e) => e.event_id as string));
      for (const [k, id] of acked) assert.ok(ids.has(id), `acknowledged ${k} (${id}) is missing`);
      const seen = new Map<string, number>();
      for (const e of events) {
        if (e.type !== 'm.room.message') continue;
        const body = (e.content as Json).body as string;
        seen.set(body, (seen.get(body) ?? 0) + 1);
      }
      for (const [body, count] of seen) assert.equal(count, 1, `${body} appears ${count} times`);
      assert.ok(acked.size > CYCLES[engine]!, `only ${acked.size} requests acknowledged`);
      assert.ok(tdAcked.size > CYCLES[engine]!, `only ${tdAcked.size} to-device messages acknowledged`);
      assert.ok(receiptAcked, 'no receipt acknowledged');
      console.log(
        `# ${engine}: ${CYCLES[engine]} kill cycles, ${acked.size} acknowledged writes, ` +
          `${tdAcked.size} to-device messages delivered once (${tdRetried} retried), receipt checked after ` +
          `${receiptsSeen} restarts (${receiptsInFlight} in flight), ${Date.now() - started} ms`,
      );
      await kill(child);
    });

    // Regression: acknowledged to-device rows are deleted, so the highest stored position does not bound the tokens
    // clients hold; the stream counter restarts above its persisted reservation (src/storage/db.ts).
    it('a to-device message sent after a restart reaches a device whose token is past every stored row', async () => {
      const tdb = await freshDatabase(engine);
      const tdir = mkdtempSync(join(tmpdir(), 'hearth-kill-td-'));
      let running: ChildProcess | undefined;
      try {
        const config = writeConfig({ db: tdb, dataDir: tdir, serverName: 'test.local' } as TestServer, {
          rate_limiting: { enabled: false },
        });
        const setup = await openStorage(tdb.config);
        for (const localpart of ['k', 'r']) {
          await createAccount(setup.db, {
            localpart,
            serverName: 'test.local',
            password: 'pw-pw-pw-pw',
            admin: false,
          });
        }
        await setup.close();
        let { child, url } = await startChild(config);
        running = child;
        const sender = new Client(url);
        const receiver = new Client(url);
        for (const [c, user] of [
          [sender, 'k'],
          [receiver, 'r'],
        ] as const) {
          const res = await c.post('/_matrix/client/v3/login', {
            type: 'm.login.password',
            identifier: { type: 'm.id.user', user },
            password: 'pw-pw-pw-pw',
          });
          c.token = res.body.access_token as string;
        }
        const device = (await receiver.get('/_matrix/client/v3/account/whoami')).body.device_id as string;
        let since = (await receiver.get('/_matrix/client/v3/sync?timeout=0')).body.next_batch as string;
        const send = (k: number): Promise<Response> =>
          sender.put(`/_matrix/client/v3/sendToDevice/${TD_TYPE}/r${k}`, {
            messages: { '@r:test.local': { [device]: { n: k } } },
          });
        const receive = async (): Promise<number[]> => {
          const res = await receiver.get(`/_matrix/client/v3/sync?timeout=0&since=${enc(since)}`);
          assert.equal(res.status, 200, JSON.stringify(res.body));
          since = res.body.next_batch as string;
          return ((res.body.to_device as Json).events as Json[]).map((e) => (e.content as Json).n as number);
        };
        assert.equal((await send(1)).status, 200);
        assert.deepEqual(await receive(), [1]);
        assert.deepEqual(await receive(), []); // acknowledges (deletes) message 1: no stored row is at `since` now
        await kill(child);
        ({ child, url } = await startChild(config));
        running = child;
        sender.baseUrl = receiver.baseUrl = url;
        assert.equal((await send(2)).status, 200);
        assert.deepEqual(await receive(), [2], `message 2 was not delivered to since=${since}`);
      } finally {
        if (running && running.exitCode === null) await kill(running);
        await tdb.drop();
        rmSync(tdir, { recursive: true, force: true });
      }
    });
  });
}
