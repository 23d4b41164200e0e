/**
 * Scenario `appservice`: homeserver → application service transactions. A fake service (node:http, answering 200 at
 * once, or 500 while "down") is registered with a users namespace; one of its users is joined to ROOMS rooms where
 * local users send messages over HTTP.
 *
 * - live: BENCH_AS_EVENTS (default 2000) messages sent by ROOMS concurrent senders while the service is up: events/s
 *   delivered (first send to last delivery) and the lag from a send's 200 to the service receiving it.
 * - catch-up: the service is down while BENCH_AS_OUTAGE (default 10000) messages are sent; then it comes back (its
 *   backoff is cut short) and the time until every message is delivered is measured.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { createAccount } from '../src/accounts/register.js';
import { startHomeserver, type Homeserver } from '../src/homeserver.js';
import { createLogger } from '../src/log.js';
import {
  BenchClient,
  envInt,
  mapConcurrent,
  percentile,
  type BenchContext,
  type BenchUser,
  type ResultRow,
  type Scenario,
} from './lib.js';

const ROOMS = 10;

class FakeService {
  up = true;
  transactions = 0;
  failures = 0;
  /** message body → when it arrived (ms, performance clock). */
  readonly arrived = new Map<string, number>();
  #server: Server | undefined;
  #waiters: (() => void)[] = [];

  async start(): Promise<string> {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (!this.up) {
          this.failures++;
          res
            .writeHead(500, { 'content-type': 'application/json' })
            .end('{"errcode":"M_UNKNOWN","error":"down"}');
          return;
        }
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          events?: { content?: { body?: unknown } }[];
        };
        const now = performance.now();
        for (const ev of body.events ?? []) {
          const b = ev.content?.body;
          if (typeof b === 'string' && !this.arrived.has(b)) this.arrived.set(b, now);
        }
        this.transactions++;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        for (const w of this.#waiters.splice(0)) w();
      });
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async waitAll(bodies: readonly string[], timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!bodies.every((b) => this.arrived.has(b))) {
      if (Date.now() > end) {
        const missing = bodies.filter((b) => !this.arrived.has(b)).length;
        throw new Error(`${missing} messages never reached the service`);
      }
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 200).unref();
      });
    }
  }

  async stop(): Promise<void> {
    const s = this.#server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

async function login(url: string, localpart: string, serverName: string, hs: Homeserver): Promise<BenchUser> {
  const password = 'bench password';
  await createAccount(hs.storage.db, { localpart, serverName, password });
  const c = new BenchClient(url);
  const res = await c.post('/_matrix/client/v3/login', {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user: localpart },
    password,
  });
  c.token = res.access_token as string;
  return Object.assign(c, { userId: res.user_id as string, deviceId: res.device_id as string });
}

let txn = 0;
async function sendAll(
  senders: readonly { user: BenchUser; roomId: string }[],
  bodies: readonly string[],
  acked?: Map<string, number>,
): Promise<void> {
  await mapConcurrent(bodies, senders.length, async (body, i) => {
    const s = senders[i % senders.length] as { user: BenchUser; roomId: string };
    await s.user.put(
      `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/send/m.room.message/as${++txn}`,
      { msgtype: 'm.text', body },
    );
    acked?.set(body, performance.now());
  });
}

const appservice: Scenario = {
  name: 'appservice',
  description: 'events/s delivered to an application service, and catch-up after an outage',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const events = envInt('BENCH_AS_EVENTS', 2000);
    const outage = envInt('BENCH_AS_OUTAGE', 10_000);
    const fake = new FakeService();
    const asUrl = await fake.start();
    // The runner's server restarted on the same database with the registration.
    const base = ctx.server.hs.config;
    const dataDir = join(base.media_store_path, '..');
    const reg = join(dataDir, 'bench-appservice.yaml');
    writeFileSync(
      reg,
      stringify({
        id: 'bench',
        url: asUrl,
        as_token: 'bench_as_token',
        hs_token: 'bench_hs_token',
        sender_localpart: '_bench_bot',
        namespaces: { users: [{ exclusive: true, regex: '@_bench_.*' }], aliases: [], rooms: [] },
        rate_limited: false,
      }),
    );
    await ctx.server.hs.close();
    const hs = await startHomeserver(
      { ...base, app_service_config_files: [reg] },
      { logger: createLogger(base.log_level) },
    );
    const rows: ResultRow[] = [];
    try {
      const url = hs.urls[0] as string;
      const serverName = base.server_name;
      const bridgeUser = `@_bench_a:${serverName}`;
      const senders: { user: BenchUser; roomId: string }[] = [];
      for (let i = 0; i < ROOMS; i++) {
        const user = await login(url, `as_sender${i}`, serverName, hs);
        const created = await user.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
        const roomId = created.room_id as string;
        await hs.writer.send(roomId, {
          type: 'm.room.member',
          sender: bridgeUser,
          state_key: bridgeUser,
          content: { membership: 'join' },
        });
        senders.push({ user, roomId });
      }
      ctx.log(`live: ${events} messages in ${ROOMS} rooms`);
      const live = Array.from({ length: events }, (_, i) => `live ${i}`);
      const acked = new Map<string, number>();
      const t0 = performance.now();
      await sendAll(senders, live, acked);
      const sentS = (performance.now() - t0) / 1000;
      await fake.waitAll(live, 120_000);
      const lastArrival = Math.max(...live.map((b) => fake.arrived.get(b) as number));
      const seconds = (lastArrival - t0) / 1000;
      const lags = live.map((b) => (fake.arrived.get(b) as number) - (acked.get(b) as number));
      rows.push({
        case: 'live',
        events,
        'send s': sentS,
        'delivered s': seconds,
        'events/s': events / seconds,
        'lag p50 ms': percentile(lags, 50),
        'lag p99 ms': percentile(lags, 99),
        txns: fake.transactions,
      });

      ctx.log(`outage: ${outage} messages while the service is down`);
      fake.up = false;
      const txnsBefore = fake.transactions;
      const down = Array.from({ length: outage }, (_, i) => `down ${i}`);
      const d0 = performance.now();
      await sendAll(senders, down);
      const sendDownS = (performance.now() - d0) / 1000;
      fake.up = true;
      const c0 = performance.now();
      hs.appServiceSender.retryNow();
      await fake.waitAll(down, 600_000);
      const catchUp = (performance.now() - c0) / 1000;
      rows.push({
        case: 'catch-up',
        events: outage,
        'send s': sendDownS,
        'delivered s': catchUp,
        'events/s': outage / catchUp,
        'lag p50 ms': '-',
        'lag p99 ms': '-',
        txns: fake.transactions - txnsBefore,
      });
    } finally {
      await hs.close();
      await fake.stop();
    }
    return rows;
  },
};

export default appservice;
