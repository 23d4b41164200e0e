/**
 * The `hearth` command line, run as a child process exactly as bin/hearth.js runs it (main(process.argv) and the same
 * top-level catch), but from the TypeScript sources so that no `npm run build` is needed: they are bundled once with
 * esbuild (the transpiler tsx uses; no type check, so work in progress elsewhere cannot break it), or run through tsx.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { validateConfig } from '../src/config/load.js';
import { openKysely, openStorage } from '../src/storage/db.js';
import { migrate } from '../src/storage/migrate.js';
import { getUser } from '../src/storage/users.js';
import { ENGINES, freshDatabase, type TestDatabase } from './helpers/engines.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const ENTRY_SOURCE = (mainUrl: string): string =>
  `import { main } from ${JSON.stringify(mainUrl)};\n` +
  'main(process.argv).catch((err) => {\n' +
  '  console.error(`hearth: ${err instanceof Error ? err.message : String(err)}`);\n' +
  '  process.exit(2);\n' +
  '});\n';

let work: string;
/** The arguments that start the CLI: node [loader] <entry>. */
let nodeArgs: string[];
let bundleDir: string | undefined;

async function bundle(): Promise<string | undefined> {
  let esbuild: { build(opts: Record<string, unknown>): Promise<unknown> };
  try {
    esbuild = (await import('esbuild' as string)) as typeof esbuild;
  } catch {
    return undefined;
  }
  // Inside the repository (so that packages resolve from node_modules), two levels below package.json, which
  // src/cli/main.ts reads relative to its own location.
  mkdirSync(join(ROOT, '.tmp'), { recursive: true });
  bundleDir = mkdtempSync(join(ROOT, '.tmp', 'cli-test-'));
  const out = join(bundleDir, 'hearth.mjs');
  await esbuild.build({
    stdin: { contents: ENTRY_SOURCE('./src/cli/main.ts'), resolveDir: ROOT, loader: 'js' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile: out,
    logLevel: 'silent',
  });
  return out;
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'hearth-cli-'));
  const bundled = await bundle();
  if (bundled) {
    nodeArgs = [bundled];
  } else {
    const entry = join(work, 'hearth.mjs');
    writeFileSync(entry, ENTRY_SOURCE(pathToFileURL(join(ROOT, 'src', 'cli', 'main.ts')).href));
    nodeArgs = ['--import', import.meta.resolve('tsx'), entry];
  }
});
after(() => {
  rmSync(work, { recursive: true, force: true });
  if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function spawnHearth(args: string[], opts: { cwd?: string } = {}): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [...nodeArgs, ...args], {
    cwd: opts.cwd ?? work,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
}

function collect(child: ChildProcessWithoutNullStreams, input?: string, timeoutMs = 30_000): Promise<Result> {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  if (input !== undefined) child.stdin.end(input);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hearth did not exit within ${timeoutMs}ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      // Let the pipes drain.
      setImmediate(() => resolve({ code, signal, stdout, stderr }));
    });
  });
}

const run = (args: string[], input?: string): Promise<Result> => collect(spawnHearth(args), input);

/** A startup failure: exit status 2, exactly one line on stderr, no stack trace. */
function assertOneLineFailure(r: Result, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0] as string, /^hearth: /);
  assert.match(lines[0] as string, pattern);
  assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at /, 'no stack trace');
}

let configCount = 0;
/** Writes a homeserver.yaml (JSON is YAML) into its own directory; returns its path. */
function writeConfig(database: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const dir = join(work, `conf-${++configCount}`);
  const path = join(dir, 'homeserver.yaml');
  const config = {
    server_name: 'cli.test',
    listeners: [{ port: 0, bind_addresses: ['127.0.0.1'] }],
    database,
    signing_key_path: 'signing.key',
    media_store_path: 'media',
    log_level: 'info',
    shutdown_grace_ms: 2000,
    ...extra,
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

// Each test spawns its own process: run them side by side.
describe('hearth CLI: commands without a server', { concurrency: 4 }, () => {
  it('prints the package version with --version', async () => {
    const r = await run(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), VERSION);
  });

  it('lists the commands with --help', async () => {
    const r = await run(['--help']);
    assert.equal(r.code, 0);
    for (const cmd of ['serve', 'generate-config', 'register-user']) assert.match(r.stdout, new RegExp(cmd));
  });

  it('exits 2 on an unknown command', async () => {
    const r = await run(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /frobnicate/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  it('generate-config prints a config that validates (SQLite)', async () => {
    const r = await run(['generate-config', '--server-name', 'example.org', '--data-dir', '/srv/hearth']);
    assert.equal(r.code, 0, r.stderr);
    const c = validateConfig(parseYaml(r.stdout), '/');
    assert.equal(c.server_name, 'example.org');
    assert.equal(c.database.engine, 'sqlite');
    assert.equal(c.database.path, '/srv/hearth/homeserver.db');
    assert.equal(c.listeners[0]?.port, 8008);
  });

  it('generate-config prints a config that validates (postgres:// --database)', async () => {
    const r = await run([
      'generate-config',
      '--server-name',
      'example.org',
      '--data-dir',
      '/srv/hearth',
      '--database',
      'postgresql://hearth:pw@db/hearth',
      '--port',
      '8448',
      '--enable-registration',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const c = validateConfig(parseYaml(r.stdout), '/');
    assert.equal(c.database.engine, 'postgres');
    assert.equal(c.database.url, 'postgresql://hearth:pw@db/hearth');
    assert.equal(c.listeners[0]?.port, 8448);
    assert.equal(c.enable_registration, true);
  });

  it('generate-config rejects a bad port and a missing server name', async () => {
    const port = await run([
      'generate-config',
      '--server-name',
      'a.test',
      '--data-dir',
      '/d',
      '--port',
      'abc',
    ]);
    assertOneLineFailure(port, /--port/);
    const missing = await run(['generate-config', '--data-dir', '/d']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--server-name/);
  });

  it('serve with an invalid config exits 2 with one line naming the key', async () => {
    const path = writeConfig({ engine: 'sqlite', path: 'homeserver.db' }, { bogus_key: 1, log_level: 7 });
    const r = await run(['serve', '--config', path]);
    assertOneLineFailure(r, /bogus_key: unknown key/);
    assert.match(r.stderr, /log_level/);
  });

  it('serve with a missing config file exits 2', async () => {
    const r = await run(['serve', '--config', join(work, 'does-not-exist.yaml')]);
    assertOneLineFailure(r, /does-not-exist\.yaml.*no such file/);
  });

  it('serve exits 2 naming the address when the port is in use', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const path = writeConfig(
        { engine: 'sqlite', path: 'homeserver.db' },
        { listeners: [{ port, bind_addresses: ['127.0.0.1'] }] },
      );
      const r = await run(['serve', '--config', path]);
      assertOneLineFailure(r, new RegExp(`127\\.0\\.0\\.1:${port}.*address already in use`));
    } finally {
      blocker.close();
    }
  });

  it('serve exits 2 when PostgreSQL is unreachable', async () => {
    const path = writeConfig({ engine: 'postgres', url: 'postgres://hearth:secret@127.0.0.1:1/hearth' });
    const r = await run(['serve', '--config', path]);
    assertOneLineFailure(r, /unreachable/);
    assert.doesNotMatch(r.stderr, /secret/, 'the password is not printed');
  });

  it('serve exits 2 when the data directory is not writable', async () => {
    // Running as root defeats permission bits; a path below a regular file is unwritable for everybody.
    const file = join(work, 'not-a-directory');
    writeFileSync(file, 'x');
    const ok = join(work, 'writable');
    const cases = [
      { media_store_path: join(file, 'media'), signing_key_path: join(ok, 'k1'), db: join(ok, 'db1') },
      { media_store_path: join(ok, 'm2'), signing_key_path: join(file, 'signing.key'), db: join(ok, 'db2') },
      { media_store_path: join(ok, 'm3'), signing_key_path: join(ok, 'k3'), db: join(file, 'homeserver.db') },
    ];
    await Promise.all(
      cases.map(async ({ db, ...paths }) => {
        const r = await run(['serve', '--config', writeConfig({ engine: 'sqlite', path: db }, paths)]);
        assertOneLineFailure(r, /not-a-directory/);
      }),
    );
  });

  it('serve exits 2 on a database from a newer Hearth', async () => {
    const dbPath = join(work, 'future.db');
    const db = openKysely({ engine: 'sqlite', path: dbPath, max_connections: 1 });
    await migrate(db, 'sqlite');
    await db.insertInto('schema_version').values({ version: 9999, name: 'future', applied_ts: 0 }).execute();
    await db.destroy();
    const r = await run(['serve', '--config', writeConfig({ engine: 'sqlite', path: dbPath })]);
    assertOneLineFailure(r, /version 9999/);
  });

  it('runs from the compiled bin/hearth.js when it has been built', async (t) => {
    if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) {
      t.skip('dist/ is not built (npm run build)');
      return;
    }
    const r = await collect(
      spawn(process.execPath, [join(ROOT, 'bin', 'hearth.js'), '--version'], { cwd: work }),
    );
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), VERSION);
  });
});

/** Starts `hearth serve`; resolves with the child and its client URL once it listens. */
async function startServe(configPath: string) {
  const child = spawnHearth(['serve', '--config', configPath]);
  const done = collect(child, undefined, 60_000);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = () => {
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const rec = JSON.parse(line) as { msg?: string; urls?: string[] };
          if (rec.msg === 'Hearth is listening' && rec.urls?.[0]) {
            child.stdout.off('data', onData);
            resolve(rec.urls[0]);
            return;
          }
        } catch {
          // a partial line
        }
      }
    };
    child.stdout.on('data', onData);
    done.then((r) => reject(new Error(`serve exited early (${r.code}): ${r.stderr}`)), reject);
  });
  return { child, url, done };
}

async function stopServe(s: Awaited<ReturnType<typeof startServe>>): Promise<Result> {
  s.child.kill('SIGTERM');
  const r = await s.done;
  assert.equal(r.signal, null, 'exited by itself, not killed by the signal');
  assert.equal(r.code, 0, `exit status after SIGTERM (stderr: ${r.stderr})`);
  return r;
}

for (const engine of ENGINES) {
  describe(`${engine}: hearth serve and register-user`, () => {
    let db: TestDatabase;
    let configPath: string;
    before(async () => {
      db = await freshDatabase(engine);
      configPath = writeConfig(db.config as Record<string, unknown>);
    });
    after(() => db.drop());

    it('serves, prints the register-user hint on first start only, and exits 0 on SIGTERM', async () => {
      const first = await startServe(configPath);
      const versions = await fetch(`${first.url}/_matrix/client/versions`);
      assert.equal(versions.status, 200);
      const r1 = await stopServe(first);
      assert.match(r1.stdout, /register-user --config \S+homeserver\.yaml --admin/);

      const second = await startServe(configPath);
      assert.equal((await fetch(`${second.url}/_matrix/client/versions`)).status, 200);
      const r2 = await stopServe(second);
      assert.doesNotMatch(r2.stdout, /register-user/);
    });

    it('register-user --admin --password creates an admin who can log in', async () => {
      const r = await run([
        'register-user',
        '--config',
        configPath,
        '--admin',
        '--password',
        's3cret!',
        'boss',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Created admin user @boss:cli\.test/);
      assert.doesNotMatch(r.stdout + r.stderr, /s3cret/);

      const dup = await run(['register-user', '--config', configPath, '--password', 'x', '@boss:cli.test']);
      assertOneLineFailure(dup, /already taken/);
      const foreign = await run([
        'register-user',
        '--config',
        configPath,
        '--password',
        'x',
        '@boss:other.test',
      ]);
      assertOneLineFailure(foreign, /does not belong/);

      // Non-interactive: the password is the first line of standard input. The name is lower-cased.
      const piped = await run(['register-user', '--config', configPath, 'Worker'], 'from-stdin\n');
      assert.equal(piped.code, 0, piped.stderr);
      assert.match(piped.stdout, /Created user @worker:cli\.test/);

      const s = await startServe(configPath);
      try {
        for (const [user, password] of [
          ['boss', 's3cret!'],
          ['worker', 'from-stdin'],
        ]) {
          const res = await fetch(`${s.url}/_matrix/client/v3/login`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              type: 'm.login.password',
              identifier: { type: 'm.id.user', user },
              password,
            }),
          });
          assert.equal(res.status, 200, user);
          assert.equal(((await res.json()) as { user_id: string }).user_id, `@${user}:cli.test`);
        }
      } finally {
        await stopServe(s);
      }
      const storage = await openStorage(
        validateConfig(parseYaml(readFileSync(configPath, 'utf8')), work).database,
      );
      try {
        assert.equal((await getUser(storage.db, '@boss:cli.test'))?.is_admin, 1);
        assert.equal((await getUser(storage.db, '@worker:cli.test'))?.is_admin, 0);
      } finally {
        await storage.close();
      }
    });
  });
}
