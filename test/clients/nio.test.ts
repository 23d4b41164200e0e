/**
 * Hearth with matrix-nio 0.20, the Python client and bot library (Debian's python3-matrix-nio, installed by
 * .ci/run), through nio's default request paths (its /_matrix/client/r0 prefix): test/clients/nio_client.py logs
 * in, syncs, joins a room, creates one, sends a message that an HTTP user reads, and receives the HTTP user's
 * answer through its sync loop; the test asserts on every step nio reports. Without nio the test is skipped with
 * the reason printed, except in CI, where a missing nio fails.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';
import { createRoom, enc, roomsOf, sync, text, type User } from '../sync/sync-util.js';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'nio_client.py');
const CI = process.env.CI === 'true' || process.env.CI === '1';
const PASSWORD = 'correct horse battery staple';

/** The first Python that can import nio (Debian's package lives under /usr/bin/python3, not a pyenv shim). */
function findPython(): string | undefined {
  for (const python of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(python, ['-c', 'import nio'], { stdio: 'ignore' });
    if (probe.status === 0) return python;
  }
  return undefined;
}

const python = findPython();
if (!python && CI) {
  throw new Error('CI=true but matrix-nio is not importable: .ci/run installs python3-matrix-nio');
}
const skip = python ? false : 'matrix-nio is not installed (apt-get install python3-matrix-nio)';
if (skip) console.log(`# SKIPPING the matrix-nio test: ${skip}`);

interface Step extends Json {
  step: string;
}

interface Run {
  steps: Step[];
  code: number | null;
  stderr: string;
}

/** Runs nio_client.py, calling `onStep` for each line it prints; resolves when it exits (or fails at 90 s). */
function runNio(args: string[], onStep: (s: Step) => Promise<void>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(python as string, [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const steps: Step[] = [];
    let stderr = '';
    let pending = Promise.resolve();
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`nio did not finish in 90 s; steps: ${JSON.stringify(steps)}; stderr: ${stderr}`));
    }, 90_000);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      let step: Step;
      try {
        step = JSON.parse(line) as Step;
      } catch {
        stderr += `(stdout) ${line}\n`;
        return;
      }
      steps.push(step);
      pending = pending.then(() => onStep(step)).catch((err: unknown) => reject(err as Error));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      void pending.then(() => resolve({ steps, code, stderr }));
    });
  });
}

const stepOf = (run: Run, name: string): Step | undefined => run.steps.find((s) => s.step === name);

for (const engine of ENGINES) {
  describe(`${engine}: matrix-nio`, { skip }, () => {
    let server: TestServer;
    let bob: User;
    let storeDir: string;

    before(async () => {
      server = await startTestServer(engine);
      storeDir = mkdtempSync(join(tmpdir(), 'hearth-nio-'));
    });
    after(async () => {
      await server.close();
      rmSync(storeDir, { recursive: true, force: true });
    });

    it('logs in, syncs, joins, creates, sends and receives through its default paths', async () => {
      await server.user('nio_alice', { password: PASSWORD });
      bob = await server.user('nio_bob');
      const room = await createRoom(bob, { preset: 'public_chat', name: 'talk to nio' });
      let seenByBob: Json | undefined;

      const run = await runNio([server.url, 'nio_alice', PASSWORD, room, bob.userId, storeDir], async (s) => {
        if (s.step !== 'sent') return;
        // The HTTP user reads nio's message, then answers it.
        const page = await bob.get(`/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=5`);
        assert.equal(page.status, 200);
        seenByBob = (page.body.chunk as Json[]).find((e) => e.event_id === s.event_id);
        await text(bob, room, 'hello nio');
      });
      const trace = `steps: ${JSON.stringify(run.steps)}\nstderr: ${run.stderr}`;
      assert.equal(run.code, 0, trace);

      const nioUser = `@nio_alice:${server.serverName}`;
      assert.equal(stepOf(run, 'login')?.user_id, nioUser, trace);
      assert.equal(typeof stepOf(run, 'sync')?.next_batch, 'string', trace);
      assert.equal(stepOf(run, 'join')?.room_id, room, trace);
      const created = stepOf(run, 'create')?.room_id as string;
      // The sync after joining and creating shows both rooms joined in nio's model.
      const syncs = run.steps.filter((s) => s.step === 'sync');
      assert.deepEqual(syncs[1]?.joined, [room, created].sort(), trace);

      // nio's message reached the HTTP user, with nio's user id and content.
      assert.equal(seenByBob?.sender, nioUser, trace);
      assert.deepEqual(seenByBob?.content, { msgtype: 'm.text', body: 'hello from nio' });

      // nio's sync loop delivered the HTTP user's answer to its RoomMessageText callback.
      const answer = run.steps.find((s) => s.step === 'message' && s.sender === bob.userId);
      assert.equal(answer?.body, 'hello nio', trace);
      assert.equal(answer.room_id, room);

      // nio's room model, built from Hearth's sync responses: members, and the room it created.
      const state = stepOf(run, 'state');
      assert.deepEqual(state?.members, [nioUser, bob.userId].sort(), trace);
      assert.equal(state.created_name, 'made by nio');
      assert.deepEqual(state.created_invited, [bob.userId]);

      // The room nio created reaches the HTTP user as an invite.
      const bobSync = await sync(bob, { timeout: 0, set_presence: 'offline' });
      assert.ok(roomsOf(bobSync, 'invite')[created], JSON.stringify(bobSync.rooms));
      assert.equal(stepOf(run, 'done')?.step, 'done', trace);
    });
  });
}
