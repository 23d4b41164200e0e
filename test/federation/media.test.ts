/**
 * Media over federation between two Hearths (and a scripted origin): a file uploaded on A is downloaded on B through
 * the authenticated client endpoint and the legacy one with the same bytes, type and file name; B thumbnails it
 * locally; B serves its cached copy when A is down; A's federation endpoints answer multipart/mixed to signed requests
 * only. Origins that answer garbage, too much, nothing or only the legacy endpoint get clean Matrix errors (or the
 * fallback), and nothing broken is cached. Every engine.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { request as httpsRequest, type Server } from 'node:https';
import { createServer } from 'node:https';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { generateSelfSignedCertificate } from '../../src/keys/tls-certificate.js';
import { mixedBoundary, parseMultipart } from '../../src/media/multipart.js';
import { ENGINES } from '../helpers/engines.js';
import { freePort, startFederatedServer, type FederatedServer } from '../helpers/federation.js';
import type { Client, Json } from '../helpers/server.js';

type User = Client & { userId: string };

const MAX_UPLOAD = 64 * 1024;

async function pngBytes(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 20, g: 120, b: 200 } } })
    .png()
    .toBuffer();
}

async function uploadTo(user: User, body: Buffer, type: string, filename: string): Promise<string> {
  const res = await fetch(
    `${user.baseUrl}/_matrix/media/v3/upload?filename=${encodeURIComponent(filename)}`,
    { method: 'POST', headers: { authorization: `Bearer ${user.token}`, 'content-type': type }, body },
  );
  assert.equal(res.status, 200);
  const uri = ((await res.json()) as { content_uri: string }).content_uri;
  return uri.slice(uri.lastIndexOf('/') + 1);
}

interface Got {
  status: number;
  headers: Headers;
  bytes: Buffer;
  json: Json;
}

async function get(base: string, path: string, token?: string): Promise<Got> {
  const res = await fetch(base + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: Json = {};
  if ((res.headers.get('content-type') ?? '').startsWith('application/json'))
    json = JSON.parse(bytes.toString()) as Json;
  return { status: res.status, headers: res.headers, bytes, json };
}

/** GET over HTTPS without a signature, trusting the self-signed certificate of a test server. */
function getInsecure(
  url: string,
): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { rejectUnauthorized: false }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () =>
        resolve({
          status: r.statusCode ?? 0,
          headers: r.headers as Record<string, string>,
          body: Buffer.concat(chunks),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

function assertError(res: Got, status: number, errcode: string): void {
  assert.equal(res.status, status, `${res.status} ${res.bytes.toString().slice(0, 200)}`);
  assert.equal(res.json.errcode, errcode);
  assert.equal(typeof res.json.error, 'string');
}

/** A scripted origin: answers media requests as `handle` says and counts them. */
class ScriptedOrigin {
  server!: Server;
  port!: number;
  requests: string[] = [];
  handle: (path: string, res: import('node:http').ServerResponse) => void = (_p, res) =>
    res.writeHead(500).end();
  cert = generateSelfSignedCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] });

  get serverName(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    this.server = createServer({ cert: this.cert.certPem, key: this.cert.keyPem }, (req, res) => {
      this.requests.push(req.url ?? '');
      this.handle(req.url ?? '', res);
    });
    await new Promise<void>((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function multipart(boundary: string, contentHeaders: string, body: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n--${boundary}\r\n${contentHeaders}\r\n\r\n`,
    ),
    body,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
}

for (const engine of ENGINES) {
  describe(`${engine}: media over federation`, () => {
    let a: FederatedServer;
    let b: FederatedServer;
    let alice: User;
    let bob: User;
    let png: Buffer;
    let imageId: string;
    const text = Buffer.from('notes from A\n'.repeat(100));
    let textId: string;

    before(async () => {
      a = await startFederatedServer(engine);
      b = await startFederatedServer(engine, {
        enable_authenticated_media: false,
        max_upload_size: MAX_UPLOAD,
      });
      alice = await a.user('alice');
      bob = await b.user('bob');
      png = await pngBytes(120, 90);
      imageId = await uploadTo(alice, png, 'image/png', 'photo.png');
      textId = await uploadTo(alice, text, 'text/plain', 'notes ä.txt');
    });
    after(async () => {
      await Promise.all([a, b].map((s) => s?.close()));
    });

    it('B downloads A’s media through the authenticated and the legacy endpoint: same bytes, type and name', async () => {
      const v1 = await get(b.url, `/_matrix/client/v1/media/download/${a.serverName}/${imageId}`, bob.token);
      assert.equal(v1.status, 200);
      assert.deepEqual(v1.bytes, png);
      assert.equal(v1.headers.get('content-type'), 'image/png');
      assert.equal(v1.headers.get('content-disposition'), 'inline; filename=photo.png');

      const legacy = await get(b.url, `/_matrix/media/v3/download/${a.serverName}/${textId}`);
      assert.equal(legacy.status, 200);
      assert.deepEqual(legacy.bytes, text);
      assert.equal(legacy.headers.get('content-type'), 'text/plain; charset=UTF-8');
      assert.equal(legacy.headers.get('content-disposition'), "inline; filename*=utf-8''notes%20%C3%A4.txt");

      const renamed = await get(
        b.url,
        `/_matrix/client/v1/media/download/${a.serverName}/${imageId}/other.png`,
        bob.token,
      );
      assert.deepEqual(renamed.bytes, png);
      assert.equal(renamed.headers.get('content-disposition'), 'inline; filename=other.png');
      // Without a token the authenticated endpoint refuses, as for local media.
      assertError(
        await get(b.url, `/_matrix/client/v1/media/download/${a.serverName}/${imageId}`),
        401,
        'M_MISSING_TOKEN',
      );
    });

    it('B thumbnails A’s image from its cached copy', async () => {
      const res = await get(
        b.url,
        `/_matrix/client/v1/media/thumbnail/${a.serverName}/${imageId}?width=32&height=32&method=crop`,
        bob.token,
      );
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'image/png');
      const meta = await sharp(res.bytes).metadata();
      assert.equal(meta.width, 32);
      assert.equal(meta.height, 32);
      const legacy = await get(
        b.url,
        `/_matrix/media/v3/thumbnail/${a.serverName}/${imageId}?width=60&height=60`,
      );
      assert.equal(legacy.status, 200);
      assert.equal((await sharp(legacy.bytes).metadata()).width, 60);
    });

    it('unknown media is 404 M_NOT_FOUND; allow_remote=false does not fetch', async () => {
      assertError(
        await get(b.url, `/_matrix/client/v1/media/download/${a.serverName}/NoSuchMediaHere`, bob.token),
        404,
        'M_NOT_FOUND',
      );
      const fresh = await uploadTo(alice, Buffer.from('fresh'), 'text/plain', 'fresh.txt');
      assertError(
        await get(b.url, `/_matrix/media/v3/download/${a.serverName}/${fresh}?allow_remote=false`),
        404,
        'M_NOT_FOUND',
      );
      const row = await b.hs.storage.db
        .selectFrom('remote_media_cache')
        .select('media_id')
        .where('media_id', '=', fresh)
        .executeTakeFirst();
      assert.equal(row, undefined);
      const ok = await get(b.url, `/_matrix/media/v3/download/${a.serverName}/${fresh}`);
      assert.equal(ok.bytes.toString(), 'fresh');
    });

    it('with authenticated media enforced, the legacy endpoint does not fetch remote media; v1 does', async () => {
      const onB = await uploadTo(bob, Buffer.from('from B'), 'text/plain', 'b.txt');
      assertError(await get(a.url, `/_matrix/media/v3/download/${b.serverName}/${onB}`), 404, 'M_NOT_FOUND');
      const v1 = await get(a.url, `/_matrix/client/v1/media/download/${b.serverName}/${onB}`, alice.token);
      assert.equal(v1.bytes.toString(), 'from B');
      // Fetched while enforced: the legacy endpoint still refuses the cached copy.
      assertError(await get(a.url, `/_matrix/media/v3/download/${b.serverName}/${onB}`), 404, 'M_NOT_FOUND');
    });

    it('A’s federation endpoints answer a signed request with multipart/mixed, an unsigned one with 401', async () => {
      const client = b.hs.federation.client;
      const res = await client.getRaw(a.serverName, `/_matrix/federation/v1/media/download/${textId}`);
      assert.equal(res.status, 200);
      const boundary = mixedBoundary(res.headers['content-type']);
      assert.ok(boundary, res.headers['content-type']);
      assert.ok(
        res.body
          .toString('latin1')
          .startsWith(`--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n`),
      );
      const parts = parseMultipart(res.body, boundary);
      assert.equal(parts.length, 2);
      assert.deepEqual(parts[1]?.body, text);
      assert.equal(parts[1]?.headers['content-type'], 'text/plain; charset=UTF-8');
      assert.match(parts[1]?.headers['content-disposition'] ?? '', /filename\*=utf-8''notes%20%C3%A4\.txt/);
      assert.equal(Number(res.headers['content-length']), res.body.length);

      const thumb = await client.getRaw(a.serverName, `/_matrix/federation/v1/media/thumbnail/${imageId}`, {
        query: { width: 64, height: 64, method: 'scale' },
      });
      assert.equal(thumb.status, 200);
      const tparts = parseMultipart(thumb.body, mixedBoundary(thumb.headers['content-type']) as string);
      assert.equal(tparts[1]?.headers['content-type'], 'image/png');
      assert.equal((await sharp(tparts[1]?.body).metadata()).width, 64);

      const unknown = await client.getRaw(
        a.serverName,
        '/_matrix/federation/v1/media/download/NoSuchMediaHere',
      );
      assert.equal(unknown.status, 404);
      assert.equal((JSON.parse(unknown.body.toString()) as Json).errcode, 'M_NOT_FOUND');

      const unsigned = await new Promise<{ status: number; body: Json }>((resolve, reject) => {
        const req = httpsRequest(
          `${a.federationUrl}/_matrix/federation/v1/media/download/${textId}`,
          { rejectUnauthorized: false },
          (r) => {
            const chunks: Buffer[] = [];
            r.on('data', (c: Buffer) => chunks.push(c));
            r.on('end', () =>
              resolve({
                status: r.statusCode ?? 0,
                body: JSON.parse(Buffer.concat(chunks).toString()) as Json,
              }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(unsigned.status, 401);
      assert.equal(unsigned.body.errcode, 'M_UNAUTHORIZED');
    });

    it('the federation listener serves the legacy unauthenticated download of local unauthenticated media only', async () => {
      // Servers before Matrix v1.11 (Synapse 1.67) fetch remote media this way, on the federation port.
      const onB = await uploadTo(bob, Buffer.from('legacy from B'), 'text/plain', 'old.txt');
      const ok = await getInsecure(
        `${b.federationUrl}/_matrix/media/r0/download/${b.serverName}/${onB}?allow_remote=false`,
      );
      assert.equal(ok.status, 200);
      assert.equal(ok.body.toString(), 'legacy from B');
      assert.match(ok.headers['content-type'] ?? '', /^text\/plain/);
      const named = await getInsecure(
        `${b.federationUrl}/_matrix/media/v3/download/${b.serverName}/${onB}/x.txt`,
      );
      assert.equal(named.body.toString(), 'legacy from B');
      // A enforces authenticated media: its uploads are not served unauthenticated, not even to servers.
      assert.equal(
        (await getInsecure(`${a.federationUrl}/_matrix/media/r0/download/${a.serverName}/${textId}`)).status,
        404,
      );
      // Another server's media is never proxied; an unknown id is 404.
      assert.equal(
        (await getInsecure(`${b.federationUrl}/_matrix/media/r0/download/${a.serverName}/${textId}`)).status,
        404,
      );
      const unknown = await getInsecure(
        `${b.federationUrl}/_matrix/media/r0/download/${b.serverName}/NoSuchMediaHere`,
      );
      assert.equal(unknown.status, 404);
      assert.equal((JSON.parse(unknown.body.toString()) as Json).errcode, 'M_NOT_FOUND');
    });

    it('B serves its cached copies (and new thumbnails of them) while A is down; the doctor is clean', async () => {
      const doctor = await (
        await b.user('doc', { admin: true })
      ).post('/_hearth/admin/v1/doctor', { repair: false });
      assert.equal(doctor.status, 200);
      assert.deepEqual(doctor.body.problems, []);
      await a.stop();
      const again = await get(
        b.url,
        `/_matrix/client/v1/media/download/${a.serverName}/${imageId}`,
        bob.token,
      );
      assert.equal(again.status, 200);
      assert.deepEqual(again.bytes, png);
      const thumb = await get(
        b.url,
        `/_matrix/client/v1/media/thumbnail/${a.serverName}/${imageId}?width=50&height=50&method=crop`,
        bob.token,
      );
      assert.equal(thumb.status, 200);
      assert.equal((await sharp(thumb.bytes).metadata()).width, 50);
      // Not cached and A unreachable: 502.
      assertError(
        await get(b.url, `/_matrix/client/v1/media/download/${a.serverName}/NeverFetchedMedia`, bob.token),
        502,
        'M_UNKNOWN',
      );
    });

    it('the doctor reports a cached copy whose file is gone and drops it on repair', async () => {
      const admin = await b.user('doc2', { admin: true });
      const row = await b.hs.storage.db
        .selectFrom('remote_media_cache')
        .select('filesystem_id')
        .where('media_id', '=', textId)
        .executeTakeFirstOrThrow();
      rmSync(
        b.hs.config.media_store_path +
          '/remote_content/' +
          row.filesystem_id.slice(0, 2) +
          '/' +
          row.filesystem_id.slice(2, 4) +
          '/' +
          row.filesystem_id.slice(4),
      );
      const check = await admin.post('/_hearth/admin/v1/doctor', { repair: false });
      const problems = check.body.problems as Json[];
      assert.deepEqual(
        problems.map((p) => p.kind),
        ['media_file_missing'],
        JSON.stringify(problems),
      );
      assert.match(String(problems[0]?.detail), new RegExp(textId));
      const repair = await admin.post('/_hearth/admin/v1/doctor', { repair: true });
      assert.deepEqual(repair.body.remaining, []);
      const gone = await b.hs.storage.db
        .selectFrom('remote_media_cache')
        .select('media_id')
        .where('media_id', '=', textId)
        .executeTakeFirst();
      assert.equal(gone, undefined);
    });
  });

  describe(`${engine}: media from a scripted origin`, () => {
    let b: FederatedServer;
    let bob: User;
    const origin = new ScriptedOrigin();

    before(async () => {
      await origin.start();
      b = await startFederatedServer(engine, { max_upload_size: MAX_UPLOAD });
      bob = await b.user('bob');
    });
    after(async () => {
      await b?.close();
      await origin.stop();
    });

    const download = (id: string): Promise<Got> =>
      get(b.url, `/_matrix/client/v1/media/download/${origin.serverName}/${id}`, bob.token);

    async function assertNotCached(id: string): Promise<void> {
      const row = await b.hs.storage.db
        .selectFrom('remote_media_cache')
        .select('media_id')
        .where('media_origin', '=', origin.serverName)
        .where('media_id', '=', id)
        .executeTakeFirst();
      assert.equal(row, undefined);
    }

    it('garbage multipart is 502 M_UNKNOWN and nothing is cached', async () => {
      origin.handle = (_p, res) =>
        res
          .writeHead(200, { 'content-type': 'multipart/mixed; boundary=xyz' })
          .end(
            '--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nno end',
          );
      assertError(await download('Garbage1'), 502, 'M_UNKNOWN');
      await assertNotCached('Garbage1');
      origin.handle = (_p, res) =>
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end('raw bytes');
      assertError(await download('Garbage2'), 502, 'M_UNKNOWN');
      await assertNotCached('Garbage2');
    });

    it('a file over max_upload_size is 502 M_TOO_LARGE and nothing is cached', async () => {
      const big = Buffer.alloc(MAX_UPLOAD + 1, 0x61);
      origin.handle = (_p, res) =>
        res
          .writeHead(200, { 'content-type': 'multipart/mixed; boundary=b0undary' })
          .end(multipart('b0undary', 'Content-Type: text/plain', big));
      assertError(await download('TooBig1'), 502, 'M_TOO_LARGE');
      await assertNotCached('TooBig1');
      // Far over the limit: the download is cut off while it is read.
      const huge = Buffer.alloc(MAX_UPLOAD * 4, 0x62);
      origin.handle = (_p, res) =>
        res
          .writeHead(200, { 'content-type': 'multipart/mixed; boundary=b0undary' })
          .end(multipart('b0undary', 'Content-Type: text/plain', huge));
      assertError(await download('TooBig2'), 502, 'M_TOO_LARGE');
      await assertNotCached('TooBig2');
    });

    it('falls back to the legacy endpoint with allow_remote=false on 404 M_UNRECOGNIZED', async () => {
      origin.requests = [];
      origin.handle = (path, res) => {
        if (path.startsWith('/_matrix/federation/v1/media/download/'))
          return res
            .writeHead(404, { 'content-type': 'application/json' })
            .end('{"errcode":"M_UNRECOGNIZED","error":"?"}');
        res
          .writeHead(200, {
            'content-type': 'text/plain',
            'content-disposition': 'attachment; filename="old server.txt"',
          })
          .end('legacy bytes');
      };
      const res = await download('OldServer1');
      assert.equal(res.status, 200);
      assert.equal(res.bytes.toString(), 'legacy bytes');
      assert.equal(res.headers.get('content-disposition'), "inline; filename*=utf-8''old%20server.txt");
      assert.equal(origin.requests.length, 2);
      const legacy = new URL(origin.requests[1] as string, 'https://origin');
      assert.equal(legacy.pathname, `/_matrix/media/v3/download/${origin.serverName}/OldServer1`);
      assert.equal(legacy.searchParams.get('allow_remote'), 'false');
    });

    it('follows a Location part; passes on 404 M_NOT_FOUND; concurrent requests share one fetch', async () => {
      origin.handle = (path, res) => {
        if (path === '/elsewhere/file')
          return res.writeHead(200, { 'content-type': 'image/gif' }).end('GIF89a-ish');
        res
          .writeHead(200, { 'content-type': 'multipart/mixed; boundary=loc' })
          .end(
            `--loc\r\nContent-Type: application/json\r\n\r\n{}\r\n--loc\r\nLocation: https://127.0.0.1:${origin.port}/elsewhere/file\r\n\r\n\r\n--loc--\r\n`,
          );
      };
      const res = await download('Redirected1');
      assert.equal(res.status, 200);
      assert.equal(res.bytes.toString(), 'GIF89a-ish');
      assert.equal(res.headers.get('content-type'), 'image/gif');

      origin.handle = (_p, res2) =>
        res2
          .writeHead(404, { 'content-type': 'application/json' })
          .end('{"errcode":"M_NOT_FOUND","error":"no"}');
      assertError(await download('Missing1'), 404, 'M_NOT_FOUND');

      origin.requests = [];
      origin.handle = (_p, res3) =>
        setTimeout(
          () =>
            res3
              .writeHead(200, { 'content-type': 'multipart/mixed; boundary=slow' })
              .end(multipart('slow', 'Content-Type: text/plain', Buffer.from('once'))),
          300,
        );
      const all = await Promise.all([1, 2, 3, 4].map(() => download('Shared1')));
      for (const r of all) assert.equal(r.bytes.toString(), 'once');
      assert.equal(origin.requests.length, 1);
      const cached = await download('Shared1');
      assert.equal(cached.bytes.toString(), 'once');
      assert.equal(origin.requests.length, 1);
    });

    it('purge_media_cache drops cached copies: the next request fetches again', async () => {
      const admin = await b.user('purger', { admin: true });
      const seconds = await admin.post(
        `/_synapse/admin/v1/purge_media_cache?before_ts=${Math.floor(Date.now() / 1000)}`,
      );
      assert.equal(seconds.status, 400);
      assert.equal(seconds.body.errcode, 'M_INVALID_PARAM');
      assert.equal(
        (await bob.post(`/_synapse/admin/v1/purge_media_cache?before_ts=${Date.now()}`)).status,
        403,
      );
      const purged = await admin.post(`/_synapse/admin/v1/purge_media_cache?before_ts=${Date.now() + 1000}`);
      assert.equal(purged.status, 200);
      assert.ok(Number(purged.body.deleted) >= 2, JSON.stringify(purged.body));
      await assertNotCached('Shared1');
      origin.requests = [];
      const again = await download('Shared1');
      assert.equal(again.bytes.toString(), 'once');
      assert.equal(origin.requests.length, 1);
    });

    it('a server outside federation_domain_whitelist is 403 M_FORBIDDEN without a request', async () => {
      const closed = await startFederatedServer(engine, { federation_domain_whitelist: ['friend.example'] });
      try {
        const carol = await closed.user('carol');
        origin.requests = [];
        assertError(
          await get(
            closed.url,
            `/_matrix/client/v1/media/download/${origin.serverName}/Denied1`,
            carol.token,
          ),
          403,
          'M_FORBIDDEN',
        );
        assert.equal(origin.requests.length, 0);
      } finally {
        await closed.close();
      }
    });
  });
}
