import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { generateConfig } from '../src/config/generate.js';
import { ConfigError, loadConfigFile, validateConfig } from '../src/config/load.js';

function base(): Record<string, unknown> {
  return {
    server_name: 'example.org',
    listeners: [{ port: 8008 }],
    database: { engine: 'sqlite', path: '/var/lib/hearth/homeserver.db' },
    signing_key_path: '/var/lib/hearth/signing.key',
    media_store_path: '/var/lib/hearth/media',
  };
}

/** The ConfigError message validateConfig throws for `raw`. */
function configError(raw: unknown, baseDir = '/etc/hearth'): string {
  try {
    validateConfig(raw, baseDir);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'), 'the message is one line');
    return err.message;
  }
  assert.fail('the config was accepted');
}

describe('config validation', () => {
  it('accepts a minimal config and fills in the defaults', () => {
    const c = validateConfig(base(), '/etc/hearth');
    assert.equal(c.server_name, 'example.org');
    assert.equal(c.enable_registration, false);
    assert.equal(c.registration_requires_token, false);
    assert.equal(c.allow_guest_access, false);
    assert.equal(c.log_level, 'info');
    assert.deepEqual(c.listeners, [
      { port: 8008, bind_addresses: ['127.0.0.1'], type: 'http', x_forwarded: false },
    ]);
    assert.equal(c.rate_limiting.enabled, true);
    assert.deepEqual(c.rate_limiting.login, { per_second: 0.17, burst_count: 3 });
    assert.equal(c.registration_shared_secret, undefined);
  });

  it('rejects an unknown top-level key, naming it', () => {
    const msg = configError({ ...base(), enable_registraton: true });
    assert.match(msg, /enable_registraton: unknown key/);
  });

  it('rejects unknown nested keys, naming the full path', () => {
    assert.match(
      configError({ ...base(), rate_limiting: { login: { per_second: 1, burst_count: 1, burst: 3 } } }),
      /rate_limiting\.login\.burst: unknown key/,
    );
    assert.match(
      configError({ ...base(), listeners: [{ port: 8008 }, { port: 8009, tsl: true }] }),
      /listeners\[1\]\.tsl: unknown key/,
    );
    assert.match(
      configError({ ...base(), database: { engine: 'sqlite', path: 'x.db', user: 'me' } }),
      /database\.user: unknown key/,
    );
  });

  it('rejects a wrong type, naming the path and what was expected', () => {
    const port = configError({ ...base(), listeners: [{ port: '8008' }] });
    assert.match(port, /listeners\[0\]\.port: .*expected number/);
    const reg = configError({ ...base(), enable_registration: 'yes' });
    assert.match(reg, /enable_registration: .*expected boolean/);
    const level = configError({ ...base(), log_level: 'loud' });
    assert.match(level, /log_level: /);
    assert.match(level, /info/);
    const range = configError({ ...base(), listeners: [{ port: 70000 }] });
    assert.match(range, /listeners\[0\]\.port: /);
  });

  it('names every missing required key', () => {
    const msg = configError({});
    for (const key of ['server_name', 'listeners', 'database', 'signing_key_path', 'media_store_path'])
      assert.match(msg, new RegExp(`${key}: `), key);
  });

  it('requires a url for the postgres engine and a path for sqlite', () => {
    assert.match(
      configError({ ...base(), database: { engine: 'postgres' } }),
      /database\.url: required when engine is postgres/,
    );
    assert.match(
      configError({ ...base(), database: { engine: 'sqlite' } }),
      /database\.path: required when engine is sqlite/,
    );
    assert.match(configError({ ...base(), database: { engine: 'mysql', path: 'x' } }), /database\.engine: /);
    const pg = validateConfig(
      { ...base(), database: { engine: 'postgres', url: 'postgres://u:p@db/hearth' } },
      '/etc/hearth',
    );
    assert.equal(pg.database.url, 'postgres://u:p@db/hearth');
  });

  it('rejects an invalid server name', () => {
    assert.match(configError({ ...base(), server_name: 'not a host' }), /server_name: /);
  });

  it('resolves relative paths against the config directory', () => {
    const c = validateConfig(
      {
        ...base(),
        database: { engine: 'sqlite', path: 'data/homeserver.db' },
        signing_key_path: './keys/signing.key',
        media_store_path: 'media',
      },
      '/etc/hearth',
    );
    assert.equal(c.database.path, '/etc/hearth/data/homeserver.db');
    assert.equal(c.signing_key_path, '/etc/hearth/keys/signing.key');
    assert.equal(c.media_store_path, '/etc/hearth/media');
    const abs = validateConfig(base(), '/etc/hearth');
    assert.equal(abs.database.path, '/var/lib/hearth/homeserver.db');
    const mem = validateConfig(
      { ...base(), database: { engine: 'sqlite', path: ':memory:' } },
      '/etc/hearth',
    );
    assert.equal(mem.database.path, ':memory:');
  });
});

describe('config files', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hearth-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('resolves relative paths against the file, not the working directory', () => {
    const sub = join(dir, 'conf');
    mkdirSync(sub);
    const file = join(sub, 'homeserver.yaml');
    writeFileSync(
      file,
      [
        'server_name: example.org',
        'listeners: [{ port: 8008 }]',
        'database: { engine: sqlite, path: homeserver.db }',
        'signing_key_path: ../keys/example.org.signing.key',
        'media_store_path: media',
      ].join('\n'),
    );
    const c = loadConfigFile(file);
    assert.equal(c.database.path, join(sub, 'homeserver.db'));
    assert.equal(c.signing_key_path, join(dir, 'keys', 'example.org.signing.key'));
    assert.equal(c.media_store_path, join(sub, 'media'));
  });

  it('explains a missing file, bad YAML and an empty file', () => {
    assert.throws(
      () => loadConfigFile(join(dir, 'nope.yaml')),
      (e: unknown) => {
        return e instanceof ConfigError && /no such file/.test(e.message) && e.message.includes('nope.yaml');
      },
    );
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'server_name: [unclosed\n  listeners: {');
    assert.throws(
      () => loadConfigFile(bad),
      (e: unknown) =>
        e instanceof ConfigError && /not valid YAML/.test(e.message) && !e.message.includes('\n'),
    );
    const empty = join(dir, 'empty.yaml');
    writeFileSync(empty, '');
    assert.throws(
      () => loadConfigFile(empty),
      (e: unknown) => e instanceof ConfigError && /server_name/.test(e.message),
    );
  });
});

describe('generated config', () => {
  it('parses and validates with SQLite under the data dir', () => {
    const text = generateConfig({ serverName: 'example.org', dataDir: '/srv/hearth', port: 8448 });
    const c = validateConfig(parseYaml(text), '/somewhere/else');
    assert.equal(c.server_name, 'example.org');
    assert.equal(c.database.engine, 'sqlite');
    assert.equal(c.database.path, '/srv/hearth/homeserver.db');
    assert.equal(c.signing_key_path, '/srv/hearth/example.org.signing.key');
    assert.equal(c.media_store_path, '/srv/hearth/media_store');
    assert.equal(c.listeners[0]?.port, 8448);
    assert.deepEqual(c.listeners[0]?.bind_addresses, ['127.0.0.1']);
    assert.equal(c.enable_registration, false);
    assert.equal(typeof c.registration_shared_secret, 'string');
    assert.ok((c.registration_shared_secret ?? '').length >= 32);
    assert.equal(c.public_baseurl, 'http://localhost:8448/');
  });

  it('uses a fresh shared secret each time', () => {
    const a = validateConfig(parseYaml(generateConfig({ serverName: 'a.test', dataDir: '/d' })), '/');
    const b = validateConfig(parseYaml(generateConfig({ serverName: 'a.test', dataDir: '/d' })), '/');
    assert.notEqual(a.registration_shared_secret, b.registration_shared_secret);
  });

  it('parses and validates with a postgres:// database URL and the other options', () => {
    const url = 'postgres://hearth:s3cret@db.internal:5432/hearth';
    const text = generateConfig({
      serverName: 'matrix.example.org:8448',
      dataDir: '/srv/hearth',
      database: url,
      enableRegistration: true,
      bindAddress: '::',
    });
    const c = validateConfig(parseYaml(text), '/');
    assert.equal(c.database.engine, 'postgres');
    assert.equal(c.database.url, url);
    assert.equal(c.database.max_connections, 10);
    assert.equal(c.enable_registration, true);
    assert.deepEqual(c.listeners[0]?.bind_addresses, ['::']);
    // The ':' of the port is not put into the key file name.
    assert.equal(c.signing_key_path, '/srv/hearth/matrix.example.org_8448.signing.key');
  });

  it('takes an explicit SQLite database path', () => {
    const c = validateConfig(
      parseYaml(generateConfig({ serverName: 'a.test', dataDir: '/d', database: '/db/hearth.sqlite' })),
      '/',
    );
    assert.equal(c.database.engine, 'sqlite');
    assert.equal(c.database.path, '/db/hearth.sqlite');
  });
});
