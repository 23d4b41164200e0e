/**
 * Uploads and downloads are streamed: a 50 MB file goes through the server (in this process) while the resident set
 * size is sampled, and the peak must stay far below the file size. The client side streams too (node:http with
 * backpressure, a hashed response), so only the server could hold the file.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';
import { get, hashResponse, mxcPath, uploadPattern } from './media-util.js';

const SIZE = 50 * 1024 * 1024;
const MAX_GROWTH = 30 * 1024 * 1024;

/** Runs `fn` while sampling RSS every 5 ms; returns the peak growth over the RSS measured just before. */
async function peakRssGrowth<T>(fn: () => Promise<T>): Promise<{ result: T; growth: number }> {
  global.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  try {
    const result = await fn();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, growth: peak - base };
  } finally {
    clearInterval(timer);
  }
}

const engine = ENGINES[0] ?? 'sqlite';
describe(`${engine}: media memory use`, () => {
  let server: TestServer;
  let alice: Client & { userId: string };
  before(async () => {
    server = await startTestServer(engine);
    alice = await server.user('alice');
    // Warm up: JIT, connection pool, sockets, the first thumbnail-free upload path.
    const warm = await uploadPattern(alice, 4 * 1024 * 1024);
    await hashResponse(
      await get(alice, `/_matrix/client/v1/media/download/${mxcPath(warm.json.content_uri)}`),
    );
  });
  after(() => server.close());

  it(`streams a ${SIZE >> 20} MB upload and download without holding the file`, async () => {
    const up = await peakRssGrowth(() => uploadPattern(alice, SIZE));
    assert.equal(up.result.status, 200);
    const path = mxcPath(up.result.json.content_uri);
    const down = await peakRssGrowth(async () =>
      hashResponse(await get(alice, `/_matrix/client/v1/media/download/${path}`)),
    );
    assert.equal(down.result.length, SIZE);
    assert.equal(down.result.sha256, up.result.sha256);
    const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MB`;
    console.log(`# rss growth: upload ${mb(up.growth)}, download ${mb(down.growth)} for ${mb(SIZE)}`);
    assert.ok(up.growth < MAX_GROWTH, `upload grew RSS by ${mb(up.growth)}`);
    assert.ok(down.growth < MAX_GROWTH, `download grew RSS by ${mb(down.growth)}`);
  });
});
