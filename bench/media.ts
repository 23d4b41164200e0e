/**
 * Scenario `media`: throughput of one large upload (POST /_matrix/media/v3/upload, streamed with node:http and
 * backpressure) and its download (GET /_matrix/client/v1/media/download, read as a stream), with the peak RSS of the
 * process (server and client share it; the client never holds the file) sampled every 5 ms. BENCH_MEDIA_MB (default
 * 100) is the file size.
 */
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { envInt, rssMiB, type BenchContext, type BenchUser, type ResultRow, type Scenario } from './lib.js';

const CHUNK = 64 * 1024;

function uploadStream(user: BenchUser, size: number): Promise<{ mxc: string; sha256: string }> {
  const hash = createHash('sha256');
  const block = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i++) block[i] = (i * 131) & 255;
  return new Promise((resolve, reject) => {
    const req = request(`${user.baseUrl}/_matrix/media/v3/upload?filename=bench.bin`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${user.token ?? ''}`,
        'content-type': 'application/octet-stream',
        'content-length': size,
      },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`upload: HTTP ${res.statusCode} ${text}`));
        resolve({
          mxc: (JSON.parse(text) as { content_uri: string }).content_uri,
          sha256: hash.digest('hex'),
        });
      });
    });
    let sent = 0;
    const write = (): void => {
      while (sent < size) {
        const n = Math.min(CHUNK, size - sent);
        // A fresh chunk each time (as a real client would read it from disk), tagged with its offset.
        const chunk = Buffer.from(block.subarray(0, n));
        chunk.writeUInt32BE(sent >>> 0, 0);
        hash.update(chunk);
        sent += n;
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

async function downloadStream(user: BenchUser, mxc: string): Promise<{ sha256: string; length: number }> {
  const res = await fetch(`${user.baseUrl}/_matrix/client/v1/media/download/${mxc.slice('mxc://'.length)}`, {
    headers: { authorization: `Bearer ${user.token ?? ''}` },
  });
  if (res.status !== 200 || !res.body) throw new Error(`download: HTTP ${res.status}`);
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of res.body) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { sha256: hash.digest('hex'), length };
}

async function measure<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; ms: number; baseRss: number; peakRss: number }> {
  const baseRss = rssMiB();
  let peakRss = baseRss;
  const timer = setInterval(() => (peakRss = Math.max(peakRss, rssMiB())), 5);
  const t0 = performance.now();
  try {
    const result = await fn();
    return { result, ms: performance.now() - t0, baseRss, peakRss: Math.max(peakRss, rssMiB()) };
  } finally {
    clearInterval(timer);
  }
}

const scenario: Scenario = {
  name: 'media',
  description: 'upload and download throughput of one large file (BENCH_MEDIA_MB, default 100) and peak RSS',
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const mb = envInt('BENCH_MEDIA_MB', 100);
    const size = mb * 1024 * 1024;
    ctx.server.hs.config.max_upload_size = Math.max(ctx.server.hs.config.max_upload_size, size);
    const user = await ctx.server.user('uploader');
    await uploadStream(user, 1024 * 1024); // warm-up
    ctx.log(`uploading ${mb} MiB`);
    const up = await measure(() => uploadStream(user, size));
    ctx.log(`downloading ${mb} MiB`);
    const down = await measure(() => downloadStream(user, up.result.mxc));
    if (down.result.length !== size || down.result.sha256 !== up.result.sha256) {
      throw new Error('media: downloaded bytes differ from the upload');
    }
    const row = (op: string, m: { ms: number; baseRss: number; peakRss: number }): ResultRow => ({
      case: `${op} ${mb} MiB`,
      'MiB/s': mb / (m.ms / 1000),
      'time s': m.ms / 1000,
      'base RSS MiB': m.baseRss,
      'peak RSS MiB': m.peakRss,
      'RSS growth MiB': m.peakRss - m.baseRss,
    });
    return [row('upload', up), row('download', down)];
  },
};

export default scenario;
