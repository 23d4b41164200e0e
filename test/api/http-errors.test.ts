import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import {
  startTestServer,
  type Client,
  type Json,
  type Response,
  type TestServer,
} from '../helpers/server.js';

const V3 = '/_matrix/client/v3';
const enc = encodeURIComponent;

/** A Matrix error body: JSON with a string errcode and error, served as exactly application/json. */
function assertMatrixError(res: Response, status: number, errcode: string, what = ''): void {
  assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body.errcode, errcode, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(typeof res.body.error, 'string', what);
  assert.equal(res.headers.get('content-type'), 'application/json', what);
}

/** Sends raw bytes as a request body (the test client only sends strings, which fetch encodes as UTF-8). */
async function sendBytes(c: Client, method: string, path: string, bytes: Uint8Array): Promise<Response> {
  const res = await fetch(c.baseUrl + path, {
    method,
    headers: { authorization: `Bearer ${c.token ?? ''}`, 'content-type': 'application/json' },
    body: bytes,
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Json, headers: res.headers };
}

/** Writes one raw HTTP request on a socket and returns everything the server sent until it closed the socket. */
function rawRequest(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let data = '';
    const sock = connect(Number(port), hostname, () => sock.write(request));
    sock.on('data', (d: Buffer) => (data += d.toString('utf8')));
    sock.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err),
    );
    sock.on('close', () => resolve(data));
  });
}

for (const engine of ENGINES) {
  describe(`${engine}: HTTP error model`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, { max_json_body_size: 4096 });
    });
    after(() => server.close());

    it('answers an unknown endpoint with 404 M_UNRECOGNIZED', async () => {
      const res = await server.client().get('/_matrix/client/v3/no/such/thing');
      assert.equal(res.status, 404);
      assert.equal(res.body.errcode, 'M_UNRECOGNIZED');
      assert.equal(typeof res.body.error, 'string');
    });

    it('answers a wrong method with 405 M_UNRECOGNIZED', async () => {
      const res = await server.client().request('DELETE', '/_matrix/client/v3/login');
      assert.equal(res.status, 405);
      assert.equal(res.body.errcode, 'M_UNRECOGNIZED');
    });

    it('answers a body that is not JSON with 400 M_NOT_JSON', async () => {
      const res = await server
        .client()
        .request('POST', '/_matrix/client/v3/login', undefined, { raw: '{nope' });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_NOT_JSON');
    });

    it('answers a JSON array body with 400 M_NOT_JSON', async () => {
      const res = await server
        .client()
        .request('POST', '/_matrix/client/v3/login', undefined, { raw: '[1,2]' });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_NOT_JSON');
    });

    it('names a missing field with M_MISSING_PARAM', async () => {
      const res = await server.client().post('/_matrix/client/v3/login', {});
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_MISSING_PARAM');
      assert.match(res.body.error as string, /type/);
    });

    it('names a field of the wrong type with M_BAD_JSON', async () => {
      const res = await server
        .client()
        .post('/_matrix/client/v3/login', { type: 'm.login.password', password: 5 });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_BAD_JSON');
      assert.match(res.body.error as string, /password/);
    });

    it('answers a body over the limit with 413 M_TOO_LARGE', async () => {
      const res = await server
        .client()
        .post('/_matrix/client/v3/login', { type: 'x', pad: 'a'.repeat(10_000) });
      assert.equal(res.status, 413);
      assert.equal(res.body.errcode, 'M_TOO_LARGE');
    });

    it('answers CORS preflight and sets CORS headers on every response', async () => {
      const res = await fetch(`${server.url}/_matrix/client/v3/sync`, { method: 'OPTIONS' });
      assert.ok(res.status === 200 || res.status === 204);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      assert.match(res.headers.get('access-control-allow-headers') ?? '', /Authorization/);
      const get = await server.client().get('/_matrix/client/versions');
      assert.equal(get.headers.get('access-control-allow-origin'), '*');
      assert.match(get.headers.get('access-control-allow-methods') ?? '', /PUT/);
    });

    it('requires a token with 401 M_MISSING_TOKEN and rejects unknown ones with M_UNKNOWN_TOKEN', async () => {
      const missing = await server.client().get('/_matrix/client/v3/account/whoami');
      assert.equal(missing.status, 401);
      assert.equal(missing.body.errcode, 'M_MISSING_TOKEN');
      const unknown = await server.client('hat_bogus').get('/_matrix/client/v3/account/whoami');
      assert.equal(unknown.status, 401);
      assert.equal(unknown.body.errcode, 'M_UNKNOWN_TOKEN');
      assert.equal(unknown.body.soft_logout, false);
    });

    it('serves /versions with v1.1 and later, and the well-known documents', async () => {
      const res = await server.client().get('/_matrix/client/versions');
      assert.equal(res.status, 200);
      const versions = res.body.versions as string[];
      assert.ok(versions.includes('v1.1'));
      assert.ok(versions.includes('v1.11'));
      const wk = await server.client().get('/.well-known/matrix/client');
      assert.equal(typeof (wk.body['m.homeserver'] as { base_url: string }).base_url, 'string');
      // The server well-known is off unless serve_server_wellknown is on (as Synapse; test/federation/transport.test.ts).
      const wks = await server.client().get('/.well-known/matrix/server');
      assert.equal(wks.status, 404);
    });
  });
}

for (const engine of ENGINES) {
  describe(`${engine}: HTTP layer input checks`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let roomId: string;
    let eventId: string;
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('layer');
      roomId = (await alice.post(`${V3}/createRoom`, {})).body.room_id as string;
      eventId = (
        await alice.put(`${V3}/rooms/${enc(roomId)}/send/m.room.message/t0`, { msgtype: 'm.text', body: 'x' })
      ).body.event_id as string;
    });
    after(() => server.close());

    /** Every body-taking endpoint the deep-nesting and string checks are tried on. */
    const bodyEndpoints = (): [string, string][] => {
      const room = enc(roomId);
      const user = enc(alice.userId);
      return [
        ['POST', `${V3}/user/${user}/filter`],
        ['PUT', `${V3}/rooms/${room}/send/m.room.message/deep1`],
        ['PUT', `${V3}/rooms/${room}/state/m.deep/`],
        ['PUT', `${V3}/user/${user}/account_data/m.deep`],
        ['PUT', `${V3}/user/${user}/rooms/${room}/account_data/m.deep`],
        ['PUT', `${V3}/user/${user}/rooms/${room}/tags/u.deep`],
        ['PUT', `${V3}/profile/${user}/displayname`],
        ['POST', `${V3}/createRoom`],
        ['POST', `${V3}/login`],
      ];
    };

    it('answers invalid percent-encoding in path parameters with 400 M_INVALID_PARAM', async () => {
      const room = enc(roomId);
      const user = enc(alice.userId);
      for (const bad of ['%FF%FE', '%ED%A0%80', '%E2%82', 'a%ZZ']) {
        const paths: [string, string][] = [
          ['GET', `${V3}/rooms/${bad}/state`],
          ['GET', `${V3}/rooms/${room}/event/${bad}`],
          ['GET', `${V3}/rooms/${room}/context/${bad}`],
          ['GET', `${V3}/rooms/${room}/state/${bad}/x`],
          ['PUT', `${V3}/rooms/${room}/send/m.room.message/${bad}`],
          ['GET', `${V3}/profile/${bad}`],
          ['GET', `${V3}/directory/room/${bad}`],
          ['POST', `${V3}/join/${bad}`],
          ['GET', `${V3}/user/${user}/account_data/${bad}`],
          ['GET', `/_matrix/client/v1/rooms/${room}/relations/${bad}`],
          ['GET', `/_matrix/client/v1/media/download/test.local/${bad}`],
          ['GET', `/_matrix/client/r0/rooms/${bad}/members`],
        ];
        for (const [method, path] of paths) {
          const res = await alice.request(method, path, method === 'GET' ? undefined : {});
          assertMatrixError(res, 400, 'M_INVALID_PARAM', `${method} ${path}`);
          assert.equal(res.headers.get('access-control-allow-origin'), '*');
        }
      }
      // The server still serves the user afterwards.
      assert.equal((await alice.get(`${V3}/account/whoami`)).status, 200);
    });

    it('answers a 10,000-character path parameter with a Matrix error', async () => {
      const long = 'a'.repeat(10_000);
      for (const path of [
        `${V3}/rooms/!${long}:test.local/state`,
        `${V3}/rooms/${enc(roomId)}/event/$${long}`,
        `${V3}/profile/@${long}:test.local`,
      ]) {
        assertMatrixError(await alice.get(path), 414, 'M_TOO_LARGE', path.slice(0, 40));
      }
    });

    it('answers headers over the HTTP parser limit with a JSON Matrix error on the socket', async () => {
      const answer = await rawRequest(
        server.url,
        `GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`,
      );
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      assert.match(head, /^HTTP\/1\.1 431 /);
      assert.match(head, /\r\nContent-Type: application\/json\r\n/i);
      assert.deepEqual(Object.keys(JSON.parse(body) as Json).sort(), ['errcode', 'error']);
      assert.equal((JSON.parse(body) as Json).errcode, 'M_TOO_LARGE');
      // A request line that is not HTTP is a 400 with a Matrix body too.
      const garbage = await rawRequest(server.url, 'NOT HTTP AT ALL\r\n\r\n');
      assert.match(garbage, /^HTTP\/1\.1 400 /);
      assert.equal((JSON.parse(garbage.split('\r\n\r\n')[1] ?? '') as Json).errcode, 'M_UNKNOWN');
      assert.equal((await alice.get(`${V3}/account/whoami`)).status, 200);
    });

    it('refuses JSON nested deeper than 100 levels with 400 M_BAD_JSON on every body-taking endpoint', async () => {
      const deepArray = `{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
      const deepObject = `{"a":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
      // 101 levels including the top-level object: just over the bound.
      const justOver = `{"a":${'['.repeat(100)}${']'.repeat(100)}}`;
      for (const [method, path] of bodyEndpoints()) {
        for (const raw of [deepArray, deepObject, justOver]) {
          const res = await alice.request(method, path, undefined, { raw });
          assertMatrixError(res, 400, 'M_BAD_JSON', `${method} ${path}`);
        }
      }
      // Brackets inside strings do not count, and nesting within the bound is accepted.
      const user = enc(alice.userId);
      const brackets = {
        text: '['.repeat(500),
        nested: JSON.parse(`${'['.repeat(99)}${']'.repeat(99)}`) as unknown,
      };
      const ok = await alice.put(`${V3}/user/${user}/account_data/m.brackets`, brackets);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const back = await alice.get(`${V3}/user/${user}/account_data/m.brackets`);
      assert.deepEqual(back.body, brackets);
      assert.equal((await alice.get(`${V3}/account/whoami`)).status, 200);
    });

    it('answers a body that is not valid UTF-8 with 400 M_NOT_JSON', async () => {
      const user = enc(alice.userId);
      const bodies = [
        Uint8Array.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), // {"a":"\xff\xfe"}
        Uint8Array.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]), // UTF-8 of U+D800
        Uint8Array.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x22, 0x7d]), // truncated sequence
      ];
      for (const bytes of bodies) {
        for (const [method, path] of [
          ['PUT', `${V3}/user/${user}/account_data/m.utf8`],
          ['POST', `${V3}/user/${user}/filter`],
          ['POST', `${V3}/login`],
        ] as const) {
          assertMatrixError(await sendBytes(alice, method, path, bytes), 400, 'M_NOT_JSON', path);
        }
      }
      // Valid multi-byte UTF-8 is accepted.
      const fine = await sendBytes(
        alice,
        'PUT',
        `${V3}/user/${user}/account_data/m.utf8`,
        new TextEncoder().encode('{"a":"héllo ☃ 😀"}'),
      );
      assert.equal(fine.status, 200);
      assert.equal((await alice.get(`${V3}/user/${user}/account_data/m.utf8`)).body.a, 'héllo ☃ 😀');
    });

    it('refuses U+0000 and unpaired surrogates in JSON strings with 400 M_BAD_JSON, never a 5xx', async () => {
      const bad = ['"x\\u0000y"', '"\\ud800"', '"\\udc00x"', '"\\ud800\\u0041"', '"\\uD83D"'];
      for (const [method, path] of bodyEndpoints()) {
        for (const value of bad) {
          for (const raw of [`{"displayname":${value},"a":${value}}`, `{${value}:1}`]) {
            const res = await alice.request(method, path, undefined, { raw });
            assertMatrixError(res, 400, 'M_BAD_JSON', `${method} ${path} ${raw}`);
          }
        }
      }
      // An escaped surrogate pair is a valid character and round-trips.
      const user = enc(alice.userId);
      const pair = await alice.request('PUT', `${V3}/profile/${user}/displayname`, undefined, {
        raw: '{"displayname":"smile \\ud83d\\ude00 \\\\u0000"}',
      });
      assert.equal(pair.status, 200, JSON.stringify(pair.body));
      const name = await alice.get(`${V3}/profile/${user}/displayname`);
      assert.equal(name.body.displayname, 'smile 😀 \\u0000');
    });

    it('refuses U+0000 in path and query parameters with 400 M_INVALID_PARAM', async () => {
      const user = enc(alice.userId);
      const room = enc(roomId);
      for (const [method, path] of [
        ['PUT', `${V3}/user/${user}/account_data/m.nul%00`],
        ['GET', `${V3}/rooms/${room}/state/m.room.name%00/`],
        ['PUT', `${V3}/rooms/${room}/send/m.room.message/txn%00`],
        ['GET', `${V3}/register/available?username=a%00b`],
        ['GET', `${V3}/rooms/${room}/messages?dir=b&from=%00`],
      ] as const) {
        const res = await alice.request(method, path, method === 'GET' ? undefined : {});
        assertMatrixError(res, 400, 'M_INVALID_PARAM', path);
      }
    });

    it('answers JSON with exactly "Content-Type: application/json"', async () => {
      const anon = server.client();
      const answers: [string, Response][] = [
        ['versions', await anon.get('/_matrix/client/versions')],
        ['whoami', await alice.get(`${V3}/account/whoami`)],
        ['send', await alice.put(`${V3}/rooms/${enc(roomId)}/send/m.room.message/ct1`, { body: 'x' })],
        ['404', await anon.get(`${V3}/nothing/here`)],
        ['405', await anon.request('PATCH', `${V3}/login`)],
        ['401', await anon.get(`${V3}/account/whoami`)],
        ['not json', await anon.request('POST', `${V3}/login`, undefined, { raw: '{' })],
        ['bad param', await anon.get(`${V3}/profile/%FF`)],
      ];
      for (const [what, res] of answers) {
        assert.equal(res.headers.get('content-type'), 'application/json', what);
      }
      // Media keeps its own type.
      const up = await fetch(`${server.url}/_matrix/media/v3/upload`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${alice.token ?? ''}`,
          'content-type': 'text/plain; charset=utf-8',
        },
        body: 'plain',
      });
      const mxc = ((await up.json()) as { content_uri: string }).content_uri.slice('mxc://'.length);
      const down = await fetch(`${server.url}/_matrix/client/v1/media/download/${mxc}`, {
        headers: { authorization: `Bearer ${alice.token ?? ''}` },
      });
      assert.equal(down.status, 200);
      assert.match(down.headers.get('content-type') ?? '', /^text\/plain/);
    });

    it('answers an unknown event id of any shape with 404 M_NOT_FOUND', async () => {
      const room = enc(roomId);
      for (const id of [
        '$anything',
        'anything',
        '$',
        '$a:b:c',
        `$${'x'.repeat(300)}`,
        '!notanevent',
        '@x:y',
      ]) {
        for (const path of [
          `${V3}/rooms/${room}/event/${enc(id)}`,
          `${V3}/rooms/${room}/context/${enc(id)}`,
          `/_matrix/client/v1/rooms/${room}/relations/${enc(id)}`,
          `/_matrix/client/v1/rooms/${room}/relations/${enc(id)}/m.annotation`,
        ]) {
          assertMatrixError(await alice.get(path), 404, 'M_NOT_FOUND', path);
        }
      }
      // The real event is still found.
      const found = await alice.get(`${V3}/rooms/${room}/event/${enc(eventId)}`);
      assert.equal(found.status, 200);
      assert.equal(found.body.event_id, eventId);
    });
  });
}
