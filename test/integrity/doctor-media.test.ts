/** The doctor checks the media store too: a row whose file is gone, and a file with no row. */
import assert from 'node:assert/strict';
import { copyFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Json, type TestServer } from '../helpers/server.js';

for (const engine of ENGINES) {
  describe(`${engine}: doctor and the media store`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    it('finds a missing media file and an orphan file, repairs both, then is clean', async () => {
      const admin = await server.user('mediadoc', { admin: true });
      const upload = async (body: string): Promise<string> => {
        const res = await fetch(`${server.url}/_matrix/media/v3/upload?filename=a.txt`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'text/plain' },
          body,
        });
        assert.equal(res.status, 200);
        return ((await res.json()) as { content_uri: string }).content_uri.split('/').pop() as string;
      };
      const gone = await upload('this file will vanish');
      const kept = await upload('this file stays');
      const store = server.hs.media.store;
      rmSync(store.contentPath(gone));
      const orphan = join(dirname(store.contentPath(kept)), 'ORPHANFILE0000000000000');
      copyFileSync(store.contentPath(kept), orphan);

      const check = await admin.post('/_hearth/admin/v1/doctor', { repair: false });
      assert.equal(check.status, 200, JSON.stringify(check.body));
      const kinds = (check.body.problems as Json[]).map((p) => p.kind);
      assert.ok(kinds.includes('media_file_missing'), JSON.stringify(check.body.problems));
      assert.ok(kinds.includes('media_file_orphan'), JSON.stringify(check.body.problems));

      const repair = await admin.post('/_hearth/admin/v1/doctor', { repair: true });
      assert.equal(repair.status, 200);
      assert.deepEqual(repair.body.remaining, []);
      const again = await admin.post('/_hearth/admin/v1/doctor', { repair: false });
      assert.deepEqual(again.body.problems, []);
      const stillThere = await fetch(`${server.url}/_matrix/client/v1/media/download/test.local/${kept}`, {
        headers: { authorization: `Bearer ${admin.token}` },
      });
      assert.equal(await stillThere.text(), 'this file stays');
    });
  });
}
