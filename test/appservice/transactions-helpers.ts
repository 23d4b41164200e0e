/** A small fake application service (node:http) recording the transactions Hearth sends it, and its registration. */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';

export interface ReceivedTxn {
  txnId: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
  /** The status the fake answered. */
  status: number;
}

export interface TxnEvent {
  event_id: string;
  type: string;
  sender: string;
  room_id: string;
  state_key?: string;
  content: Record<string, unknown>;
}

export class FakeAppService {
  readonly received: ReceivedTxn[] = [];
  /** 'ok' answers 200, 'fail' 500. */
  mode: 'ok' | 'fail' = 'ok';
  #server: Server | undefined;
  url = '';

  async start(port = 0): Promise<void> {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const m = /^\/_matrix\/app\/v1\/transactions\/([^/?]+)/.exec(req.url ?? '');
        if (req.method !== 'PUT' || !m) {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ errcode: 'M_UNRECOGNIZED', error: 'not here' }));
          return;
        }
        const status = this.mode === 'ok' ? 200 : 500;
        this.received.push({
          txnId: decodeURIComponent(m[1] as string),
          authorization: req.headers.authorization,
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
          status,
        });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(status === 200 ? '{}' : JSON.stringify({ errcode: 'M_UNKNOWN', error: 'down' }));
      });
    });
    await new Promise<void>((resolve) => this.#server?.listen(port, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const s = this.#server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Acknowledged transactions, each txn id once (a re-sent acknowledged id is a duplicate the AS drops). */
  acknowledged(): ReceivedTxn[] {
    const seen = new Set<string>();
    return this.received.filter((t) => {
      if (t.status !== 200 || seen.has(t.txnId)) return false;
      seen.add(t.txnId);
      return true;
    });
  }

  /** Events of the acknowledged transactions, in order. */
  events(): TxnEvent[] {
    return this.acknowledged().flatMap((t) => (t.body.events as TxnEvent[] | undefined) ?? []);
  }

  /** Bodies of m.text messages delivered, in order. */
  bodies(): string[] {
    return this.events()
      .filter((e) => e.type === 'm.room.message')
      .map((e) => e.content.body as string);
  }

  async waitFor(what: string, ok: () => boolean, timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

export interface RegistrationOptions {
  id: string;
  url: string;
  users?: string[];
  aliases?: string[];
  rooms?: string[];
  receiveEphemeral?: boolean;
  msc3202?: boolean;
}

/** Writes a Synapse-format registration file into `dir`; returns its path. */
export function writeRegistration(dir: string, o: RegistrationOptions): string {
  const path = join(dir, `${o.id}.yaml`);
  const ns = (list: string[] | undefined, exclusive: boolean) =>
    (list ?? []).map((regex) => ({ exclusive, regex }));
  writeFileSync(
    path,
    stringify({
      id: o.id,
      url: o.url,
      as_token: `as_${o.id}`,
      hs_token: `hs_${o.id}`,
      sender_localpart: `_${o.id}_bot`,
      namespaces: { users: ns(o.users, true), aliases: ns(o.aliases, false), rooms: ns(o.rooms, false) },
      rate_limited: false,
      ...(o.receiveEphemeral ? { receive_ephemeral: true } : {}),
      ...(o.msc3202 ? { 'org.matrix.msc3202': true } : {}),
    }),
  );
  return path;
}
