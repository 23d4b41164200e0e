/**
 * Thumbnails over HTTP on every engine, for images made here with sharp: crop gives exactly the requested size, scale
 * fits within it and never enlarges, GIFs give their first frame unless animated=true, Synapse's default sizes are
 * made after upload, and images over max_image_pixels are refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp, { type Metadata } from 'sharp';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';
import { get, mxcPath, upload } from './media-util.js';

const V1 = '/_matrix/client/v1/media';
type User = Client & { userId: string };

async function image(format: 'png' | 'jpeg' | 'webp' | 'gif', width = 400, height = 300): Promise<Buffer> {
  const base = sharp({ create: { width, height, channels: 3, background: { r: 200, g: 80, b: 20 } } });
  return base[format]().toBuffer();
}

async function animatedGif(): Promise<Buffer> {
  const frame = (c: string) =>
    sharp({ create: { width: 120, height: 90, channels: 3, background: c } })
      .png()
      .toBuffer();
  const frames = await Promise.all([frame('#f00'), frame('#0f0'), frame('#00f')]);
  return sharp(frames, { join: { animated: true } })
    .gif({ delay: [100, 100, 100], loop: 0 })
    .toBuffer();
}

async function thumb(
  who: User,
  path: string,
  q: string,
): Promise<{ status: number; type: string | null; meta?: Metadata; body: Buffer }> {
  const res = await get(who, `${V1}/thumbnail/${path}?${q}`);
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) return { status: res.status, type: res.headers.get('content-type'), body };
  return { status: 200, type: res.headers.get('content-type'), meta: await sharp(body).metadata(), body };
}

for (const engine of ENGINES) {
  describe(`${engine}: media thumbnails`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
    });
    after(() => server.close());

    for (const [format, type, out] of [
      ['png', 'image/png', 'png'],
      ['jpeg', 'image/jpeg', 'jpeg'],
      ['webp', 'image/webp', 'webp'],
      ['gif', 'image/gif', 'png'],
    ] as const) {
      it(`${format}: crop is exact, scale fits within the bounds without enlarging`, async () => {
        const up = await upload(alice, await image(format), { type });
        assert.equal(up.status, 200);
        const path = mxcPath(up.json.content_uri);

        const crop = await thumb(bob, path, 'width=64&height=50&method=crop');
        assert.equal(crop.status, 200);
        assert.equal(crop.meta?.format, out);
        assert.deepEqual([crop.meta?.width, crop.meta?.height], [64, 50]);

        const scale = await thumb(bob, path, 'width=100&height=100&method=scale');
        assert.deepEqual([scale.meta?.width, scale.meta?.height], [100, 75]);
        const big = await thumb(bob, path, 'width=1000&height=1000&method=scale');
        assert.deepEqual([big.meta?.width, big.meta?.height], [400, 300]);

        // Cached: the same request gives the same bytes.
        const again = await thumb(bob, path, 'width=64&height=50&method=crop');
        assert.deepEqual(again.body, crop.body);
      });
    }

    it('pre-generates Synapse default sizes after upload', async () => {
      const up = await upload(alice, await image('png', 1000, 800), { type: 'image/png' });
      const id = mxcPath(up.json.content_uri).split('/')[1] as string;
      const deadline = Date.now() + 15_000;
      let rows: { width: number; height: number; method: string }[] = [];
      while (Date.now() < deadline) {
        rows = await server.hs.storage.db
          .selectFrom('media_thumbnails')
          .select(['width', 'height', 'method'])
          .where('media_id', '=', id)
          .orderBy('width')
          .execute();
        if (rows.length === 5) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(
        rows.map((r) => `${r.width}x${r.height}-${r.method}`),
        ['32x32-crop', '96x96-crop', '320x240-scale', '640x480-scale', '800x600-scale'],
      );
      const t = await thumb(bob, `test.local/${id}`, 'width=800&height=600&method=scale');
      assert.deepEqual([t.meta?.width, t.meta?.height], [750, 600]);
    });

    it('animated GIF: first frame by default, animated WebP with animated=true', async () => {
      const up = await upload(alice, await animatedGif(), { type: 'image/gif' });
      const path = mxcPath(up.json.content_uri);
      const still = await thumb(bob, path, 'width=60&height=60&method=crop');
      assert.equal(still.meta?.pages ?? 1, 1);
      assert.deepEqual([still.meta?.width, still.meta?.height], [60, 60]);
      const moving = await thumb(bob, path, 'width=60&height=60&method=crop&animated=true');
      assert.equal(moving.type, 'image/webp');
      assert.equal(moving.meta?.pages, 3);
      assert.deepEqual([moving.meta?.width, moving.meta?.pageHeight ?? moving.meta?.height], [60, 60]);
      // A still image asked for animated gives a still thumbnail.
      const png = await upload(alice, await image('png'), { type: 'image/png' });
      const s = await thumb(
        bob,
        mxcPath(png.json.content_uri),
        'width=32&height=32&method=crop&animated=true',
      );
      assert.equal(s.meta?.format, 'png');
    });

    it('refuses images over max_image_pixels, non-images and bad parameters', async () => {
      const up = await upload(alice, await image('png'), { type: 'image/png' });
      const path = mxcPath(up.json.content_uri);
      server.hs.config.max_image_pixels = 10_000;
      try {
        const big = await thumb(bob, path, 'width=33&height=33&method=crop');
        assert.equal(big.status, 413);
        assert.equal(JSON.parse(big.body.toString()).errcode, 'M_TOO_LARGE');
      } finally {
        server.hs.config.max_image_pixels = 32_000_000;
      }
      const text = await upload(alice, 'not an image', { type: 'text/plain' });
      const t = await thumb(bob, mxcPath(text.json.content_uri), 'width=32&height=32');
      assert.equal(t.status, 400);
      const lying = await upload(alice, 'not a png', { type: 'image/png' });
      assert.equal((await thumb(bob, mxcPath(lying.json.content_uri), 'width=32&height=32')).status, 400);
      assert.equal((await thumb(bob, path, 'width=32&height=32&method=stretch')).status, 400);
      assert.equal((await thumb(bob, path, 'width=0&height=32')).status, 400);
    });
  });
}
