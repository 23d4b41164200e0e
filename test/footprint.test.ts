/**
 * Idle footprint: a started server has not loaded the packages only some requests or settings need (sharp for
 * thumbnails, prom-client for metrics, pino-pretty for terminal logs), and each still works once it is needed —
 * sharp on the first thumbnail, prom-client when metrics are on. What is loaded is seen by a module load hook
 * registered here (imports) and in the require cache (require calls), so nothing else in this file may import them.
 */
import assert from 'node:assert/strict';
import { createRequire, register } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { deflateSync } from 'node:zlib';
import { ENGINES } from './helpers/engines.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { get, mxcPath, upload } from './media/media-util.js';

const requireCache = createRequire(import.meta.url).cache;
const imported = new Set<string>();
const { port1, port2 } = new MessageChannel();
port1.on('message', (url: string) => imported.add(url));
port1.unref();
register(
  `data:text/javascript,${encodeURIComponent(
    'let port; export function initialize(d) { port = d.port; }' +
      'export async function load(url, ctx, next) { port.postMessage(url); return next(url, ctx); }',
  )}`,
  { data: { port: port2 }, transferList: [port2] },
);

async function loaded(pkg: string): Promise<boolean> {
  await sleep(50); // the hook's messages arrive asynchronously
  const where = `/node_modules/${pkg}/`;
  return [...imported, ...Object.keys(requireCache)].some((f) => f.includes(where));
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A `width`×`height` RGB PNG, encoded here so that the test does not load sharp itself. */
function png(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter, no interlace
  const row = Buffer.alloc(1 + width * 3);
  for (let x = 0; x < width; x++) row.set([200, (x * 4) & 255, 20], 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('footprint: lazily loaded packages', () => {
  const servers: TestServer[] = [];
  before(async () => {
    for (const engine of ENGINES) servers.push(await startTestServer(engine));
  });
  after(async () => {
    for (const s of servers) await s.close();
  });

  it('a started server has not loaded sharp, prom-client or pino-pretty', async () => {
    // Guard: the detection itself works (pino is CommonJS and always loaded).
    assert.ok(await loaded('pino'), 'loaded packages are seen');
    for (const pkg of ['sharp', 'prom-client', 'pino-pretty']) assert.equal(await loaded(pkg), false, pkg);
  });

  it('the first thumbnail loads sharp and is made (every engine)', async () => {
    for (const server of servers) {
      const alice = await server.user('alice');
      const up = await upload({ baseUrl: server.url, token: alice.token }, png(64, 48), {
        type: 'image/png',
      });
      assert.equal(up.status, 200, JSON.stringify(up.json));
      const res = await get(
        { baseUrl: server.url, token: alice.token },
        `/_matrix/client/v1/media/thumbnail/${mxcPath(up.json.content_uri)}?width=32&height=32&method=crop`,
      );
      assert.equal(res.status, 200, server.db.config.engine);
      assert.equal(res.headers.get('content-type'), 'image/png');
      const body = Buffer.from(await res.arrayBuffer());
      assert.deepEqual([...body.subarray(1, 4)], [0x50, 0x4e, 0x47]);
      assert.equal(body.readUInt32BE(16), 32, 'thumbnail width');
      assert.equal(body.readUInt32BE(20), 32, 'thumbnail height');
    }
    assert.ok(await loaded('sharp'), 'sharp is loaded once a thumbnail was made');
  });

  it('metrics on: prom-client is loaded at start and the scrape works', async () => {
    assert.equal(await loaded('prom-client'), false);
    const server = await startTestServer(ENGINES[0] ?? 'sqlite', { enable_metrics: true });
    try {
      assert.ok(await loaded('prom-client'));
      const res = await fetch(`${server.url}/_hearth/metrics`);
      assert.equal(res.status, 200);
      assert.match(await res.text(), /^# TYPE hearth_http_requests_total counter$/m);
    } finally {
      await server.close();
    }
  });
});
