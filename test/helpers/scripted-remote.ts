/** A scripted federation destination for the queue tests: an HTTPS server that records /send transactions. */
import { createServer, type Server } from 'node:https';
import { generateSelfSignedCertificate } from '../../src/keys/tls-certificate.js';
import { freePort } from './federation.js';

export interface Txn {
  txnId: string;
  body: {
    origin: string;
    pdus: { event_id?: string; type: string; content: { body?: string } }[];
    edus: unknown[];
  };
}

/** A destination that records transactions; `mode` decides the answer. */
export class ScriptedRemote {
  server!: Server;
  port!: number;
  txns: Txn[] = [];
  mode: 'ok' | 'fail' = 'ok';
  cert = generateSelfSignedCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] });

  get serverName(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(port?: number): Promise<void> {
    this.port = port ?? (await freePort());
    this.server = createServer({ cert: this.cert.certPem, key: this.cert.keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const m = /^\/_matrix\/federation\/v1\/send\/([^/?]+)$/.exec(req.url ?? '');
        if (req.method !== 'PUT' || !m) return res.writeHead(404).end('{"errcode":"M_UNRECOGNIZED"}');
        if (this.mode === 'fail') return res.writeHead(500).end('{"errcode":"M_UNKNOWN"}');
        this.txns.push({
          txnId: decodeURIComponent(m[1] as string),
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Txn['body'],
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"pdus":{}}');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  bodies(): string[] {
    return this.txns.flatMap((t) => t.body.pdus.map((p) => p.content.body)).filter((b) => b !== undefined);
  }
}
