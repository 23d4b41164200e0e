/**
 * Media with a real client on every engine: matrix-js-sdk uploads an image with uploadContent, and another user's
 * client builds authenticated media URLs (mxcUrlToHttp with useAuthentication) and fetches the image and a thumbnail
 * with its own access token.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { createJsClient, silenceSdkLogs } from '../clients/js-sdk.js';
import { sha256 } from './media-util.js';

silenceSdkLogs();

for (const engine of ENGINES) {
  describe(`${engine}: matrix-js-sdk media`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it("uploads an image with uploadContent; another user's client downloads it and its thumbnail", async () => {
      const alice = createJsClient(await server.user('alice'));
      const bobUser = await server.user('bob');
      const bob = createJsClient(bobUser);
      const png = await sharp({ create: { width: 320, height: 200, channels: 4, background: '#3366cc' } })
        .png()
        .toBuffer();

      const { content_uri: mxc } = await alice.uploadContent(png, { type: 'image/png', name: 'photo.png' });
      assert.match(mxc, /^mxc:\/\/test\.local\/[A-Za-z]{24}$/);

      const auth = { authorization: `Bearer ${bobUser.token ?? ''}` };
      const url = bob.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true) ?? '';
      assert.ok(url.includes('/_matrix/client/v1/media/download/'), url);
      const res = await fetch(url, { headers: auth });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'image/png');
      assert.equal(res.headers.get('content-disposition'), 'inline; filename=photo.png');
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(png));

      const thumbUrl = bob.mxcUrlToHttp(mxc, 96, 96, 'crop', false, true, true) ?? '';
      assert.ok(thumbUrl.includes('/_matrix/client/v1/media/thumbnail/'), thumbUrl);
      const thumb = await fetch(thumbUrl, { headers: auth });
      assert.equal(thumb.status, 200);
      const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['png', 96, 96]);

      const anonymous = await fetch(url);
      assert.equal(anonymous.status, 401);
      await anonymous.arrayBuffer();
      alice.stopClient();
      bob.stopClient();
    });
  });
}
