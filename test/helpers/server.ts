/** Starts a real Hearth on an ephemeral port for HTTP tests, and a small client for calling it. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAccount } from '../../src/accounts/register.js';
import { validateConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { startHomeserver, type Homeserver } from '../../src/homeserver.js';
import { createLogger } from '../../src/log.js';
import type { Engine } from '../../src/storage/dialect.js';
import { freshDatabase, type TestDatabase } from './engines.js';

export interface Json {
  [key: string]: unknown;
}

export interface Response {
  status: number;
  body: Json;
  headers: Headers;
}

export class Client {
  constructor(
    public baseUrl: string,
    public token?: string,
  ) {}

  async request(
    method: string,
    path: string,
    body?: unknown,
    opts: { token?: string | null; raw?: string; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === null ? undefined : (opts.token ?? this.token);
    if (token) headers.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (opts.raw !== undefined) payload = opts.raw;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, { method, headers, body: payload });
    const text = await res.text();
    let parsed: Json = {};
    if (text) {
      try {
        parsed = JSON.parse(text) as Json;
      } catch {
        parsed = { _text: text };
      }
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  get(path: string, opts?: { token?: string | null }): Promise<Response> {
    return this.request('GET', path, undefined, opts);
  }
  post(path: string, body?: unknown, opts?: { token?: string | null }): Promise<Response> {
    return this.request('POST', path, body ?? {}, opts);
  }
  put(path: string, body?: unknown, opts?: { token?: string | null }): Promise<Response> {
    return this.request('PUT', path, body ?? {}, opts);
  }
  delete(path: string, body?: unknown, opts?: { token?: string | null }): Promise<Response> {
    return this.request('DELETE', path, body, opts);
  }
}

export interface TestServer {
  hs: Homeserver;
  url: string;
  serverName: string;
  db: TestDatabase;
  dataDir: string;
  client(token?: string): Client;
  /** Creates a user directly and logs it in; returns a client holding its token. */
  user(
    localpart: string,
    opts?: { admin?: boolean; password?: string },
  ): Promise<Client & { userId: string; deviceId: string }>;
  /** Stops the server but keeps the database (for restart tests). */
  stop(): Promise<void>;
  /** Stops the server and removes everything. */
  close(): Promise<void>;
}

export async function startTestServer(
  engine: Engine,
  overrides: Partial<ConfigInput> = {},
  reuse?: { db: TestDatabase; dataDir: string },
): Promise<TestServer> {
  const db = reuse?.db ?? (await freshDatabase(engine));
  const dataDir = reuse?.dataDir ?? mkdtempSync(join(tmpdir(), 'hearth-data-'));
  const serverName = overrides.server_name ?? 'test.local';
  const config = validateConfig(
    {
      server_name: serverName,
      listeners: [{ port: 0, bind_addresses: ['127.0.0.1'] }],
      database: db.config,
      signing_key_path: join(dataDir, 'signing.key'),
      media_store_path: join(dataDir, 'media'),
      log_level: process.env.HEARTH_TEST_LOG ?? 'silent',
      rate_limiting: { enabled: false },
      registration_shared_secret: 'test-shared-secret',
      ...overrides,
    },
    dataDir,
  );
  const hs = await startHomeserver(config, { logger: createLogger(config.log_level) });
  const url = hs.urls[0] as string;
  const server: TestServer = {
    hs,
    url,
    serverName,
    db,
    dataDir,
    client: (token) => new Client(url, token),
    async user(localpart, opts = {}) {
      const password = opts.password ?? 'correct horse battery staple';
      await createAccount(hs.storage.db, { localpart, serverName, password, admin: opts.admin ?? false });
      const c = new Client(url);
      const res = await c.post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: localpart },
        password,
      });
      if (res.status !== 200) throw new Error(`login failed: ${JSON.stringify(res.body)}`);
      c.token = res.body.access_token as string;
      return Object.assign(c, { userId: res.body.user_id as string, deviceId: res.body.device_id as string });
    },
    stop: () => hs.close(),
    async close() {
      await hs.close();
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return server;
}
