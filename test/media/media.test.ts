/**
 * The content repository over HTTP on every engine: uploads and downloads (byte-exact, streamed), headers, ranges,
 * async uploads, authentication, the legacy endpoints' cutoff, limits and error cases, interrupted uploads, and the
 * admin API.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';
import { get, hashResponse, mxcPath, patternBody, patternBytes, sha256, upload } from './media-util.js';

const V1 = '/_matrix/client/v1/media';
const LEGACY = '/_matrix/media/v3';
type User = Client & { userId: string };

async function uploadSmall(
  who: User,
  data: Buffer | string,
  type = 'text/plain',
  filename?: string,
): Promise<string> {
  const res = await upload(who, data, { type, filename });
  assert.equal(res.status, 200, JSON.stringify(res.json));
  return mxcPath(res.json.content_uri);
}

async function mediaRows(server: TestServer): Promise<number> {
  const r = await server.hs.storage.db
    .selectFrom('media')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

for (const engine of ENGINES) {
  describe(`${engine}: media repository`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let admin: User;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      admin = await server.user('root', { admin: true });
    });
    after(() => server.close());

    it('serves the media config to authenticated users only', async () => {
      const res = await alice.get(`${V1}/config`);
      assert.equal(res.status, 200);
      assert.equal(res.body['m.upload.size'], 50 * 1024 * 1024);
      const anon = await server.client().get(`${V1}/config`);
      assert.equal(anon.status, 401);
      assert.equal(anon.body.errcode, 'M_MISSING_TOKEN');
    });

    it('round-trips a 10 MB upload byte for byte, streamed both ways', async () => {
      const size = 10 * 1024 * 1024;
      const { body, sha256: sent } = patternBody(size);
      const res = await upload(alice, body, { type: 'application/octet-stream', filename: 'big.bin' });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      const path = mxcPath(res.json.content_uri);
      assert.match(path, /^test\.local\/[A-Za-z]{24}$/);
      const dl = await get(bob, `${V1}/download/${path}`);
      assert.equal(dl.status, 200);
      assert.equal(dl.headers.get('content-length'), String(size));
      assert.equal(dl.headers.get('content-type'), 'application/octet-stream');
      assert.equal(dl.headers.get('content-disposition'), 'attachment; filename=big.bin');
      const got = await hashResponse(dl);
      assert.equal(got.length, size);
      assert.equal(got.sha256, sent());
    });

    it('sends Synapse headers: inline only for safe types, sandbox CSP, CORP, file name override', async () => {
      const text = await uploadSmall(alice, 'hello', 'text/plain', 'hi there.txt');
      const res = await get(bob, `${V1}/download/${text}`);
      assert.equal(await res.text(), 'hello');
      assert.equal(res.headers.get('content-type'), 'text/plain; charset=UTF-8');
      assert.equal(res.headers.get('content-disposition'), "inline; filename*=utf-8''hi%20there.txt");
      assert.match(
        res.headers.get('content-security-policy') ?? '',
        /^sandbox; default-src 'none'; script-src 'none';/,
      );
      assert.equal(res.headers.get('cross-origin-resource-policy'), 'cross-origin');
      const named = await get(bob, `${V1}/download/${text}/other.txt`);
      assert.equal(named.headers.get('content-disposition'), 'inline; filename=other.txt');
      await named.arrayBuffer();

      const html = await uploadSmall(alice, '<script>alert(1)</script>', 'text/html');
      const h = await get(bob, `${V1}/download/${html}`);
      assert.equal(h.headers.get('content-disposition'), 'attachment');
      await h.arrayBuffer();

      const none = await upload(alice, new Uint8Array([1, 2]));
      const n = await get(bob, `${V1}/download/${mxcPath(none.json.content_uri)}`);
      assert.equal(n.headers.get('content-type'), 'application/octet-stream');
      await n.arrayBuffer();
    });

    it('answers Range requests with 206 and the right bytes', async () => {
      const data = patternBytes(100_000);
      const path = await uploadSmall(alice, data, 'application/octet-stream');
      const part = await get(bob, `${V1}/download/${path}`, { headers: { range: 'bytes=1000-1999' } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get('content-range'), 'bytes 1000-1999/100000');
      assert.equal(part.headers.get('content-length'), '1000');
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), data.subarray(1000, 2000));
      const tail = await get(bob, `${V1}/download/${path}`, { headers: { range: 'bytes=-10' } });
      assert.equal(tail.status, 206);
      assert.deepEqual(Buffer.from(await tail.arrayBuffer()), data.subarray(99_990));
      const open = await get(bob, `${V1}/download/${path}`, { headers: { range: 'bytes=99000-' } });
      assert.equal(sha256(Buffer.from(await open.arrayBuffer())), sha256(data.subarray(99_000)));
      const bad = await get(bob, `${V1}/download/${path}`, { headers: { range: 'bytes=200000-' } });
      assert.equal(bad.status, 416);
      assert.equal(bad.headers.get('content-range'), 'bytes */100000');
      await bad.arrayBuffer();
    });

    it('requires authentication on every v1 endpoint', async () => {
      const path = await uploadSmall(alice, 'secret');
      for (const p of [
        `${V1}/download/${path}`,
        `${V1}/download/${path}/f.txt`,
        `${V1}/thumbnail/${path}?width=32&height=32`,
        `${V1}/preview_url?url=https://example.org`,
        `${V1}/config`,
      ]) {
        const res = await server.client().get(p);
        assert.equal(res.status, 401, p);
        assert.equal(res.body.errcode, 'M_MISSING_TOKEN', p);
      }
      const up = await upload({ baseUrl: server.url }, 'x');
      assert.equal(up.status, 401);
      const create = await server.client().post('/_matrix/media/v1/create', {});
      assert.equal(create.status, 401);
    });

    it('404s unknown media and other servers, 400s malformed ids', async () => {
      const unknown = await alice.get(`${V1}/download/test.local/abcdefghijklmnopqrstuvwx`);
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
      // Other servers' media is fetched over federation (test/federation/media.test.ts), unless allow_remote=false.
      const remote = await alice.get(
        `${V1}/download/other.example/abcdefghijklmnopqrstuvwx?allow_remote=false`,
      );
      assert.equal(remote.status, 404);
      const badId = await alice.get(`${V1}/download/test.local/bad.id%21`);
      assert.equal(badId.status, 400);
      assert.equal(badId.body.errcode, 'M_INVALID_PARAM');
      const badServer = await alice.get(`${V1}/thumbnail/bad%20server/abc?width=1&height=1`);
      assert.equal(badServer.status, 400);
      const legacy = await alice.get(`${LEGACY}/download/test.local/abcdefghijklmnopqrstuvwx`);
      assert.equal(legacy.status, 404);
      const badThumb = await alice.get(
        `${V1}/thumbnail/test.local/abcdefghijklmnopqrstuvwx?width=x&height=1`,
      );
      assert.equal(badThumb.status, 400);
      const missing = await alice.get(`${V1}/thumbnail/test.local/abcdefghijklmnopqrstuvwx?height=1`);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
    });

    it('refuses uploads over max_upload_size with 413 M_TOO_LARGE', async () => {
      const before = await mediaRows(server);
      server.hs.config.max_upload_size = 1000;
      try {
        const declared = await upload(alice, patternBytes(2000));
        assert.equal(declared.status, 413);
        assert.equal(declared.json.errcode, 'M_TOO_LARGE');
        const chunked = await upload(alice, patternBody(3000, { chunk: 700 }).body);
        assert.equal(chunked.status, 413);
        assert.equal(chunked.json.errcode, 'M_TOO_LARGE');
        assert.equal((await alice.get(`${V1}/config`)).body['m.upload.size'], 1000);
        const ok = await upload(alice, patternBytes(1000));
        assert.equal(ok.status, 200);
      } finally {
        server.hs.config.max_upload_size = 50 * 1024 * 1024;
      }
      assert.equal(await mediaRows(server), before + 1);
      assert.deepEqual(readdirSync(server.hs.media.store.tmpDir), []);
    });

    it('async upload: create, wait, upload once, then serve', async () => {
      const created = await alice.post('/_matrix/media/v1/create', {});
      assert.equal(created.status, 200);
      const path = mxcPath(created.body.content_uri);
      const expires = created.body.unused_expires_at as number;
      assert.ok(expires > Date.now() + 3600_000);

      const early = await alice.get(`${V1}/download/${path}?timeout_ms=100`);
      assert.equal(early.status, 504);
      assert.equal(early.body.errcode, 'M_NOT_YET_UPLOADED');

      const waiting = get(bob, `${V1}/download/${path}?timeout_ms=10000`);
      const byBob = await upload(bob, 'nope', { method: 'PUT', path: `${LEGACY}/upload/${path}` });
      assert.equal(byBob.status, 403);
      assert.equal(byBob.json.errcode, 'M_FORBIDDEN');
      const put = await upload(alice, 'async content', {
        method: 'PUT',
        path: `${LEGACY}/upload/${path}`,
        type: 'text/plain',
        filename: 'a.txt',
      });
      assert.equal(put.status, 200, JSON.stringify(put.json));
      assert.deepEqual(put.json, {});
      const waited = await waiting;
      assert.equal(waited.status, 200);
      assert.equal(await waited.text(), 'async content');

      const again = await upload(alice, 'other', { method: 'PUT', path: `${LEGACY}/upload/${path}` });
      assert.equal(again.status, 409);
      assert.equal(again.json.errcode, 'M_CANNOT_OVERWRITE_MEDIA');
      const dl = await get(alice, `${V1}/download/${path}`);
      assert.equal(await dl.text(), 'async content');

      const unknown = await upload(alice, 'x', {
        method: 'PUT',
        path: `${LEGACY}/upload/test.local/nosuchmediaid`,
      });
      assert.equal(unknown.status, 404);
    });

    it('limits pending async uploads per user', async () => {
      const carol = await server.user('carol');
      server.hs.config.max_pending_media_uploads = 2;
      try {
        assert.equal((await carol.post('/_matrix/media/v1/create', {})).status, 200);
        assert.equal((await carol.post('/_matrix/media/v1/create', {})).status, 200);
        const third = await carol.post('/_matrix/media/v1/create', {});
        assert.equal(third.status, 429);
        assert.equal(third.body.errcode, 'M_LIMIT_EXCEEDED');
        assert.equal(typeof third.body.retry_after_ms, 'number');
        assert.equal((await bob.post('/_matrix/media/v1/create', {})).status, 200);
      } finally {
        server.hs.config.max_pending_media_uploads = 5;
      }
    });

    it('serves legacy unauthenticated downloads only for media uploaded before authenticated media was on', async () => {
      server.hs.config.enable_authenticated_media = false;
      let old: string;
      try {
        old = await uploadSmall(alice, 'old media');
      } finally {
        server.hs.config.enable_authenticated_media = true;
      }
      const fresh = await uploadSmall(alice, 'new media');
      const oldRes = await get(server.client(), `${LEGACY}/download/${old}`, { auth: false });
      assert.equal(oldRes.status, 200);
      assert.equal(await oldRes.text(), 'old media');
      const r0 = await get(server.client(), `/_matrix/media/r0/download/${old}/x.txt`, { auth: false });
      assert.equal(r0.status, 200);
      await r0.arrayBuffer();
      const freshRes = await server.client().get(`${LEGACY}/download/${fresh}`);
      assert.equal(freshRes.status, 404);
      assert.equal(freshRes.body.errcode, 'M_NOT_FOUND');
      const freshThumb = await server.client().get(`${LEGACY}/thumbnail/${fresh}?width=32&height=32`);
      assert.equal(freshThumb.status, 404);
      const v1 = await get(bob, `${V1}/download/${old}`);
      assert.equal(await v1.text(), 'old media');
    });

    it('answers preview_url with a clear "disabled" error', async () => {
      const res = await alice.get(`${V1}/preview_url?url=${encodeURIComponent('https://matrix.org')}`);
      assert.equal(res.status, 404);
      assert.equal(res.body.errcode, 'M_UNRECOGNIZED');
      assert.match(res.body.error as string, /disabled/);
    });

    it('leaves no row and no file behind when an upload is interrupted, and cleans temp files at start', async () => {
      const rows = await mediaRows(server);
      const files = (await server.hs.media.store.contentIds()).length;
      const controller = new AbortController();
      const { body } = patternBody(20 * 1024 * 1024, { stallAfter: 2 * 1024 * 1024 });
      const pending = upload(alice, body, { signal: controller.signal }).catch((err: unknown) => err);
      const tmpDir = server.hs.media.store.tmpDir;
      const deadline = Date.now() + 10_000;
      while (readdirSync(tmpDir).length === 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(readdirSync(tmpDir).length, 1, 'the upload reached the temp file');
      controller.abort();
      assert.ok((await pending) instanceof Error);
      const gone = Date.now() + 10_000;
      while (readdirSync(tmpDir).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 10));
      assert.equal(await mediaRows(server), rows);
      assert.equal((await server.hs.media.store.contentIds()).length, files);
      assert.deepEqual(readdirSync(tmpDir), [], 'the interrupted temp file is removed');

      // A crash (no chance to clean up) leaves only a temp file, which the next start removes.
      writeFileSync(join(tmpDir, 'crashed-upload'), patternBytes(1000));
      assert.equal(await server.hs.media.store.init(), 1);
      assert.deepEqual(readdirSync(tmpDir), []);
    });

    it('finds and repairs orphan files and rows without files', async () => {
      const orphan = server.hs.media.store.contentPath('orphanorphanorphanorphan');
      const kept = await uploadSmall(alice, 'to lose');
      const lostId = kept.split('/')[1] as string;
      await server.hs.media.store.commit(
        await server.hs.media.store.writeTempBuffer(Buffer.from('orphan')),
        orphan,
      );
      await server.hs.media.store.remove(lostId);
      const found = await server.hs.media.checkIntegrity();
      assert.deepEqual(found.orphanFiles, ['orphanorphanorphanorphan']);
      assert.deepEqual(found.missingFiles, [lostId]);
      await server.hs.media.checkIntegrity(true);
      assert.ok(!existsSync(orphan));
      assert.deepEqual(await server.hs.media.checkIntegrity(), { orphanFiles: [], missingFiles: [] });
      assert.equal((await alice.get(`${V1}/download/${kept}`)).status, 404);
    });

    it('admin: quarantine, protect and delete by id and by age; admins only', async () => {
      const A = '/_synapse/admin/v1/media';
      const path = await uploadSmall(alice, 'quarantine me');
      const id = path.split('/')[1] as string;
      const denied = await alice.post(`${A}/quarantine/${path}`, {});
      assert.equal(denied.status, 403);
      assert.equal(denied.body.errcode, 'M_FORBIDDEN');
      assert.equal((await admin.post(`${A}/quarantine/${path}`, {})).status, 200);
      assert.equal((await bob.get(`${V1}/download/${path}`)).status, 404);
      assert.equal((await admin.post(`${A}/unquarantine/${path}`, {})).status, 200);
      const back = await get(bob, `${V1}/download/${path}`);
      assert.equal(await back.text(), 'quarantine me');

      assert.equal((await alice.delete(`${A}/${path}`)).status, 403);
      const del = await admin.delete(`${A}/${path}`);
      assert.equal(del.status, 200);
      assert.deepEqual(del.body, { deleted_media: [id], total: 1 });
      assert.equal((await bob.get(`${V1}/download/${path}`)).status, 404);
      assert.ok(!existsSync(server.hs.media.store.contentPath(id)));
      assert.equal((await admin.delete(`${A}/${path}`)).status, 404);

      const old = await uploadSmall(alice, 'old');
      const avatar = await uploadSmall(alice, 'avatar');
      const guarded = await uploadSmall(alice, 'protected');
      await alice.put(`/_matrix/client/v3/profile/${alice.userId}/avatar_url`, {
        avatar_url: `mxc://${avatar}`,
      });
      assert.equal((await admin.post(`${A}/protect/${guarded.split('/')[1]}`, {})).status, 200);
      await new Promise((r) => setTimeout(r, 5));
      const cutoff = Date.now();
      await new Promise((r) => setTimeout(r, 5));
      const young = await uploadSmall(alice, 'young');
      assert.equal((await alice.post(`${A}/delete?before_ts=${cutoff}`, {})).status, 403);
      const aged = await admin.post(`${A}/delete?before_ts=${cutoff}`, {});
      assert.equal(aged.status, 200);
      const deleted = aged.body.deleted_media as string[];
      assert.equal(aged.body.total, deleted.length);
      assert.ok(deleted.includes(old.split('/')[1] as string));
      assert.ok(!deleted.includes(avatar.split('/')[1] as string), 'avatars are kept');
      assert.ok(!deleted.includes(guarded.split('/')[1] as string), 'protected media is kept');
      assert.ok(!deleted.includes(young.split('/')[1] as string), 'newer media is kept');
      assert.equal((await bob.get(`${V1}/download/${old}`)).status, 404);
      const stillYoung = await get(bob, `${V1}/download/${young}`);
      assert.equal(await stillYoung.text(), 'young');
      const badTs = await admin.post(`${A}/delete`, {});
      assert.equal(badTs.status, 400);
    });
  });
}
