/** The admin API driven by a real admin client: synadm (Debian package), configured against a test Hearth. */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

function ensureSynadm(): boolean {
  const has = () => spawnSync('synadm', ['--help'], { stdio: 'ignore' }).status === 0;
  if (has()) return true;
  spawnSync('apt-get', ['install', '-y', '-qq', 'synadm'], {
    stdio: 'ignore',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return has();
}

const available = ensureSynadm();
const run = promisify(execFile);

for (const engine of ENGINES) {
  describe(
    `synadm against Hearth (${engine})`,
    { skip: available ? false : 'synadm is not installable here' },
    () => {
      let ts: TestServer;
      let dir: string;
      let cfg: string;

      /** Runs synadm in batch mode with JSON output; returns the JSON documents it printed. */
      const synadm = async (...args: string[]): Promise<Record<string, unknown>> => {
        // Asynchronous: the server under test runs in this process.
        const res = await run('synadm', ['-c', cfg, '--batch', '-o', 'json', ...args], {
          timeout: 30_000,
        }).catch((err: { stderr?: string; message: string }) =>
          assert.fail(`synadm ${args.join(' ')}: ${err.stderr ?? err.message}`),
        );
        const docs = res.stdout.split('\n').filter((l) => l.trim().startsWith('{'));
        assert.ok(docs.length > 0, `synadm ${args.join(' ')} printed no JSON: ${res.stdout}${res.stderr}`);
        return JSON.parse(docs.at(-1) as string) as Record<string, unknown>;
      };

      before(async () => {
        ts = await startTestServer(engine);
        const admin = await ts.user('boss', { admin: true });
        await ts.user('dave');
        dir = mkdtempSync(join(tmpdir(), 'synadm-'));
        cfg = join(dir, 'synadm.yaml');
        writeFileSync(
          cfg,
          [
            `user: "${admin.userId}"`,
            `token: "${admin.token}"`,
            `base_url: "${ts.url}"`,
            'admin_path: /_synapse/admin',
            'matrix_path: /_matrix',
            'timeout: 20',
            'format: json',
            'server_discovery: well-known',
            `homeserver: ${ts.serverName}`,
            'ssl_verify: true',
          ].join('\n'),
        );
      });
      after(async () => {
        await ts.close();
        rmSync(dir, { recursive: true, force: true });
      });

      it('reports the server version', async () => {
        assert.match(String((await synadm('version')).server_version), /^Hearth /);
      });

      it('lists users, creates one, resets its password and deactivates it', async () => {
        const listed = await synadm('user', 'list');
        const names = (listed.users as { name: string }[]).map((u) => u.name);
        assert.deepEqual(names, ['@boss:test.local', '@dave:test.local']);
        assert.equal(listed.total, 2);

        const created = await synadm(
          'user',
          'modify',
          'erin',
          '--password',
          'first pass',
          '--display-name',
          'Erin',
        );
        assert.equal(created.name, '@erin:test.local');
        assert.equal(created.displayname, 'Erin');
        const login = (password: string) =>
          ts.client().post('/_matrix/client/v3/login', {
            type: 'm.login.password',
            identifier: { type: 'm.id.user', user: 'erin' },
            password,
          });
        const first = await login('first pass');
        assert.equal(first.status, 200);

        assert.deepEqual(await synadm('user', 'password', 'erin', '--password', 'second pass'), {});
        assert.equal((await login('first pass')).status, 403);
        assert.equal((await login('second pass')).status, 200);
        // The reset logged out the old session.
        const whoami = await ts
          .client(first.body.access_token as string)
          .get('/_matrix/client/v3/account/whoami');
        assert.equal(whoami.status, 401);

        assert.deepEqual(await synadm('user', 'deactivate', 'erin'), { id_server_unbind_result: 'success' });
        assert.equal((await login('second pass')).status, 403);
        const details = await synadm('user', 'details', 'erin');
        assert.equal(details.deactivated, 1);
        const active = ((await synadm('user', 'list')).users as { name: string }[]).map((u) => u.name);
        assert.ok(!active.includes('@erin:test.local'));
        const all = (await synadm('user', 'list', '--deactivated')).users as { name: string }[];
        assert.ok(all.some((u) => u.name === '@erin:test.local'));
      });

      it('lists rooms and deletes one', async () => {
        const owner = await ts.user('roomowner');
        const mk = async (name: string) =>
          (await owner.post('/_matrix/client/v3/createRoom', { name })).body.room_id as string;
        const doomed = await mk('Doomed room');
        const kept = await mk('Kept room');
        const listed = await synadm('room', 'list');
        assert.equal(listed.total_rooms, 2);
        const rooms = listed.rooms as { room_id: string; name: string; joined_members: number }[];
        assert.deepEqual(
          rooms.map((r) => r.name),
          ['Doomed room', 'Kept room'],
        );
        assert.equal(rooms[0]?.joined_members, 1);
        const filtered = await synadm('room', 'list', '--name', 'kept');
        assert.deepEqual(
          (filtered.rooms as { room_id: string }[]).map((r) => r.room_id),
          [kept],
        );

        const deleted = await synadm('room', 'delete', doomed);
        assert.deepEqual(deleted.kicked_users, [owner.userId]);
        assert.deepEqual(deleted.failed_to_kick_users, []);
        const after = await synadm('room', 'list');
        assert.deepEqual(
          (after.rooms as { room_id: string }[]).map((r) => r.room_id),
          [kept],
        );
        const sync = await owner.get('/_matrix/client/v3/rooms/' + encodeURIComponent(doomed) + '/state');
        assert.notEqual(sync.status, 200);
      });
    },
  );
}
