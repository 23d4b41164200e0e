/**
 * Crash safety: a client drives messages, state changes and receipts at full speed while the server (a child
 * process) is killed with SIGKILL at random moments. After every kill the doctor finds the database clean; after
 * every restart the requests that were in flight are retried with their txnId; at the end every request that got
 * a 2xx is readable through /messages, and no retried transaction produced a second event.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { createAccount } from '../../src/accounts/register.js';
import { runDoctor } from '../../src/integrity/doctor.js';
import { openStorage } from '../../src/storage/db.js';
import { ENGINES, freshDatabase, type TestDatabase } from '../helpers/engines.js';
import { Client, type Json, type TestServer } from '../helpers/server.js';
import { allMessages, enc, writeConfig } from './util.js';

const CYCLES: Record<string, number> = { sqlite: 20, postgres: 10 };
const ROOT = join(import.meta.dirname, '..', '..');

/** The child server bundled once with esbuild: starting it is then a fraction of a second, not a full tsx load. */
async function bundleChild(): Promise<string> {
  const { build } = await import('esbuild');
  const outfile = join(ROOT, 'node_modules', '.cache', `hearth-kill-child-${process.pid}.mjs`);
  await build({
    entryPoints: [join(import.meta.dirname, 'child-server.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'silent',
  });
  process.once('exit', () => rmSync(outfile, { force: true }));
  return outfile;
}
let bundled: string | undefined;

async function startChild(config: string): Promise<{ child: ChildProcess; url: string }> {
  bundled ??= await bundleChild();
  const proc = spawn(process.execPath, [bundled, config], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    rl.once('line', (line) => resolve({ child: proc, url: (JSON.parse(line) as { url: string }).url }));
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

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
      await createAccount(setup.db, {
        localpart: 'k',
        serverName: 'test.local',
        password: 'pw-pw-pw-pw',
        admin: false,
      });
      await setup.close();

      let { child, url } = await startChild(config);
      const client = new Client(url);
      const login = await client.post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'k' },
        password: 'pw-pw-pw-pw',
      });
      client.token = login.body.access_token as string;
      const room = (await client.post('/_matrix/client/v3/createRoom', {})).body.room_id as string;
      const rid = enc(room);

      const acked = new Map<string, string>(); // txnId or state key -> event id
      const inFlight = new Set<string>();
      let n = 0;
      let lastEvent: string | undefined;
      let alive = true;
      const worker = async (w: number): Promise<void> => {
        while (alive) {
          const i = n++;
          const txn = `t${i}`;
          try {
            if (i % 5 === 4) {
              const res = await client.put(`/_matrix/client/v3/rooms/${rid}/state/m.room.topic`, {
                topic: txn,
              });
              if (res.status === 200) acked.set(`state-${txn}`, res.body.event_id as string);
            } else if (i % 7 === 6 && lastEvent) {
              await client.post(`/_matrix/client/v3/rooms/${rid}/receipt/m.read/${enc(lastEvent)}`, {});
            } else {
              inFlight.add(txn);
              const res = await client.put(`/_matrix/client/v3/rooms/${rid}/send/m.room.message/${txn}`, {
                msgtype: 'm.text',
                body: txn,
              });
              if (res.status === 200) {
                acked.set(txn, res.body.event_id as string);
                lastEvent = res.body.event_id as string;
                inFlight.delete(txn);
              }
            }
          } catch {
            return; // the server is gone
          }
          void w;
        }
      };

      const started = Date.now();
      for (let cycle = 0; cycle < (CYCLES[engine] as number); cycle++) {
        alive = true;
        const workers = [worker(0), worker(1), worker(2)];
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 300));
        await kill(child);
        alive = false;
        await Promise.all(workers);

        const storage = await openStorage(db.config);
        try {
          const report = await runDoctor(storage);
          assert.deepEqual(report.problems, [], `cycle ${cycle}: ${JSON.stringify(report.problems)}`);
        } finally {
          await storage.close();
        }

        ({ child, url } = await startChild(config));
        client.baseUrl = url;
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
      console.log(
        `# ${engine}: ${CYCLES[engine]} kill cycles, ${acked.size} acknowledged writes, ${Date.now() - started} ms`,
      );
      await kill(child);
    });
  });
}
