/**
 * A scripted hostile federation peer for the hostile-server tests: an HTTPS server with its own ed25519 key and its
 * own server name (localhost:<port>) that speaks the federation API. It serves its key document (which a test may
 * replace with a lying one), records the transactions other servers send it, and answers get_missing_events,
 * /state_ids, /event and /event_auth with whatever the test scripts (garbage, lies, silence). It signs its own
 * requests with the X-Matrix header, so it can send any body (garbage included) to a real Hearth, and it builds and
 * signs events with its key (or with any other key the test hands it).
 */
import { createServer, request as httpsRequest, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { generateSelfSignedCertificate } from '../../src/keys/tls-certificate.js';
import { signRequest } from '../../src/federation/x-matrix.js';
import { buildEvent, type EventTemplate } from '../../src/rooms/build.js';
import type { JsonObject } from '../../src/rooms/event.js';
import { computeEventId } from '../../src/rooms/hashing.js';
import { generateSigningSeed, publicKeyBase64FromSeed, signJson } from '../../src/rooms/signing.js';
import { freePort } from './federation.js';

/** What the hostile server answers to one request: JSON, raw bytes, or nothing at all. */
export type Answer =
  | { status: number; body: unknown }
  | { status: number; raw: string | Buffer }
  | { hang: true }
  | { close: true };

export interface Signer {
  serverName: string;
  keyId: string;
  seed: Uint8Array;
}

export interface HttpResult {
  status: number;
  body: unknown;
}

/** The scripted answers, by endpoint; unset ones answer from the events the server knows (or 404). */
export interface Script {
  keys?: () => Answer;
  missingEvents?: (roomId: string, body: JsonObject) => Answer;
  stateIds?: (roomId: string, eventId: string) => Answer;
  event?: (eventId: string) => Answer;
  eventAuth?: (roomId: string, eventId: string) => Answer;
}

const NOT_FOUND: Answer = { status: 404, body: { errcode: 'M_NOT_FOUND', error: 'Not found' } };

export class HostileServer {
  server!: Server;
  port!: number;
  readonly keyId = 'ed25519:h1';
  readonly seed = generateSigningSeed();
  readonly cert = generateSelfSignedCertificate({
    commonName: 'localhost',
    altNames: ['localhost', '127.0.0.1'],
  });
  script: Script = {};
  /** Every event built or received, by id: the default answers of /event. */
  readonly events = new Map<string, JsonObject>();
  /** The transactions other servers sent here. */
  readonly received: { origin: string; pdus: JsonObject[]; edus: JsonObject[] }[] = [];
  /** The paths of every request received (query included). */
  readonly requests: string[] = [];
  readonly #hanging = new Set<ServerResponse>();

  /**
   * `localhost:<port>`: a host name, not an IP literal like the Hearths' names, so that an m.room.server_acl can
   * deny it alone (ACLs match the name without its port). It resolves to the loopback address it listens on.
   */
  get serverName(): string {
    return `localhost:${this.port}`;
  }

  get signer(): Signer {
    return { serverName: this.serverName, keyId: this.keyId, seed: this.seed };
  }

  /** The honest key document: this server's one key, valid for a day, signed. */
  keyDocument(
    extra: { verify_keys?: JsonObject; old_verify_keys?: JsonObject; valid_until_ts?: number } = {},
  ) {
    return signJson(
      {
        server_name: this.serverName,
        valid_until_ts: extra.valid_until_ts ?? Date.now() + 86_400_000,
        verify_keys: { [this.keyId]: { key: publicKeyBase64FromSeed(this.seed) }, ...extra.verify_keys },
        old_verify_keys: extra.old_verify_keys ?? {},
      },
      this.serverName,
      this.keyId,
      this.seed,
    );
  }

  async start(): Promise<void> {
    this.port = await freePort();
    this.server = createServer({ cert: this.cert.certPem, key: this.cert.keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.#answer(req, res, this.#route(req, Buffer.concat(chunks))));
    });
    await new Promise<void>((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
  }

  /** Drops the connections of the requests held by a `hang` answer; returns how many there were. */
  releaseHanging(): number {
    const n = this.#hanging.size;
    for (const res of this.#hanging) res.destroy();
    this.#hanging.clear();
    return n;
  }

  /** How many requests a `hang` answer holds right now. */
  get hanging(): number {
    return this.#hanging.size;
  }

  async stop(): Promise<void> {
    this.releaseHanging();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #route(req: IncomingMessage, body: Buffer): Answer {
    const url = new URL(req.url ?? '/', 'https://localhost');
    const path = url.pathname;
    this.requests.push(`${req.method ?? ''} ${path}${url.search}`);
    const json = (): JsonObject => {
      try {
        return JSON.parse(body.toString('utf8')) as JsonObject;
      } catch {
        return {};
      }
    };
    const m = (re: RegExp): string[] | undefined => re.exec(path)?.slice(1).map(decodeURIComponent);
    if (path === '/_matrix/key/v2/server')
      return this.script.keys?.() ?? { status: 200, body: this.keyDocument() };
    let p: string[] | undefined;
    if (m(/^\/_matrix\/federation\/v1\/send\/([^/]+)$/)) {
      const txn = json();
      const pdus = (Array.isArray(txn.pdus) ? txn.pdus : []) as JsonObject[];
      this.received.push({ origin: String(txn.origin), pdus, edus: (txn.edus ?? []) as JsonObject[] });
      return { status: 200, body: { pdus: {} } };
    }
    if ((p = m(/^\/_matrix\/federation\/v1\/get_missing_events\/([^/]+)$/)))
      return this.script.missingEvents?.(p[0] as string, json()) ?? { status: 200, body: { events: [] } };
    if ((p = m(/^\/_matrix\/federation\/v1\/state_ids\/([^/]+)$/)))
      return this.script.stateIds?.(p[0] as string, url.searchParams.get('event_id') ?? '') ?? NOT_FOUND;
    if ((p = m(/^\/_matrix\/federation\/v1\/event_auth\/([^/]+)\/([^/]+)$/)))
      return this.script.eventAuth?.(p[0] as string, p[1] as string) ?? NOT_FOUND;
    if ((p = m(/^\/_matrix\/federation\/v1\/event\/([^/]+)$/))) {
      const id = p[0] as string;
      if (this.script.event) return this.script.event(id);
      const ev = this.events.get(id);
      return ev
        ? { status: 200, body: { origin: this.serverName, origin_server_ts: Date.now(), pdus: [ev] } }
        : NOT_FOUND;
    }
    return { status: 404, body: { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' } };
  }

  #answer(_req: IncomingMessage, res: ServerResponse, answer: Answer): void {
    if ('hang' in answer) {
      this.#hanging.add(res);
      res.on('close', () => this.#hanging.delete(res));
      return;
    }
    if ('close' in answer) {
      res.destroy();
      return;
    }
    const payload = 'raw' in answer ? answer.raw : JSON.stringify(answer.body);
    res.writeHead(answer.status, { 'content-type': 'application/json' }).end(payload);
  }

  /** Builds and signs an event (with this server's key unless `signer` says otherwise) and remembers it. */
  build(
    template: EventTemplate,
    roomVersion: string,
    signer: Signer = this.signer,
  ): { eventId: string; pdu: JsonObject } {
    const built = buildEvent(template, { roomVersion, ...signer });
    const pdu = built.pdu as unknown as JsonObject;
    this.events.set(built.eventId, pdu);
    return { eventId: built.eventId, pdu };
  }

  /** The event id of any PDU-shaped object in a room version (undefined when it cannot be computed). */
  static eventIdOf(pdu: JsonObject, roomVersion: string): string | undefined {
    try {
      return computeEventId(pdu, roomVersion);
    } catch {
      return undefined;
    }
  }

  /**
   * A request to another server's federation API, signed with X-Matrix by `as` (this server by default). `raw`
   * sends bytes as the body instead of JSON (the signature then covers `body`, or no content).
   */
  request(
    destination: string,
    method: string,
    path: string,
    opts: { body?: unknown; raw?: string | Buffer; as?: Signer; unsigned?: boolean } = {},
  ): Promise<HttpResult> {
    const as = opts.as ?? this.signer;
    const payload =
      opts.raw !== undefined
        ? Buffer.from(opts.raw)
        : opts.body !== undefined
          ? Buffer.from(JSON.stringify(opts.body), 'utf8')
          : undefined;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload) headers['content-type'] = 'application/json';
    if (!opts.unsigned)
      headers.authorization = signRequest(
        { method, uri: path, origin: as.serverName, destination, content: opts.body },
        as.keyId,
        as.seed,
      );
    const [host, port] = [
      destination.slice(0, destination.lastIndexOf(':')),
      destination.slice(destination.lastIndexOf(':') + 1),
    ];
    return new Promise((resolve, reject) => {
      const r = httpsRequest(
        {
          host,
          port: Number(port),
          method,
          path,
          headers: { ...headers, ...(payload ? { 'content-length': String(payload.length) } : {}) },
          rejectUnauthorized: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let body: unknown = text;
            try {
              body = text ? JSON.parse(text) : undefined;
            } catch {
              // not JSON: kept as text, the tests assert on it
            }
            resolve({ status: res.statusCode ?? 0, body });
          });
          res.on('error', reject);
        },
      );
      r.on('error', reject);
      r.end(payload);
    });
  }

  /** PUT /send/{txnId} with these PDUs and EDUs. */
  send(destination: string, txnId: string, pdus: unknown[], edus: unknown[] = []): Promise<HttpResult> {
    return this.request(destination, 'PUT', `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`, {
      body: { origin: this.serverName, origin_server_ts: Date.now(), pdus, edus },
    });
  }

  /** Joins `userId` (a user of this server) to a room of `destination` with make_join and send_join v2. */
  async join(
    destination: string,
    roomId: string,
    userId: string,
  ): Promise<{ eventId: string; roomVersion: string }> {
    const r = encodeURIComponent(roomId);
    const u = encodeURIComponent(userId);
    const made = await this.request(
      destination,
      'GET',
      `/_matrix/federation/v1/make_join/${r}/${u}?ver=10&ver=11&ver=12`,
    );
    if (made.status !== 200) throw new Error(`make_join: ${made.status} ${JSON.stringify(made.body)}`);
    const { room_version: roomVersion, event } = made.body as { room_version: string; event: JsonObject };
    const { hashes: _h, signatures: _s, origin: _o, ...template } = event;
    const built = this.build(
      { ...(template as unknown as EventTemplate), origin_server_ts: Date.now() },
      roomVersion,
    );
    const sent = await this.request(
      destination,
      'PUT',
      `/_matrix/federation/v2/send_join/${r}/${encodeURIComponent(built.eventId)}`,
      { body: built.pdu },
    );
    if (sent.status !== 200) throw new Error(`send_join: ${sent.status} ${JSON.stringify(sent.body)}`);
    const res = sent.body as { state: JsonObject[]; auth_chain: JsonObject[] };
    for (const ev of [...res.state, ...res.auth_chain]) {
      const id = HostileServer.eventIdOf(ev, roomVersion);
      if (id) this.events.set(id, ev);
    }
    return { eventId: built.eventId, roomVersion };
  }
}
