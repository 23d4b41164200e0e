/** Compatibility with older clients: the r0 path prefixes, the v1 paths the spec keeps, and ?access_token=. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createAccount } from '../../src/accounts/register.js';
import { withCapturedLogs } from '../helpers/logs.js';
import { ENGINES } from '../helpers/engines.js';
import { Client, startTestServer, type TestServer } from '../helpers/server.js';

const R0 = '/_matrix/client/r0';
const enc = encodeURIComponent;

for (const engine of ENGINES) {
  describe(`${engine}: legacy r0 paths and query-string tokens`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
      await createAccount(server.hs.storage.db, {
        localpart: 'nio',
        serverName: server.serverName,
        password: 'nio password',
        admin: false,
      });
    });
    after(() => server.close());

    it('logs in, sends, reads messages and syncs through /_matrix/client/r0 (matrix-nio default paths)', async () => {
      const anon = server.client();
      const flows = await anon.get(`${R0}/login`);
      assert.equal(flows.status, 200);
      assert.ok((flows.body.flows as { type: string }[]).some((f) => f.type === 'm.login.password'));
      const login = await anon.post(`${R0}/login`, {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'nio' },
        password: 'nio password',
      });
      assert.equal(login.status, 200, JSON.stringify(login.body));
      assert.equal(login.body.user_id, '@nio:test.local');
      const c = server.client(login.body.access_token as string);

      const room = await c.post(`${R0}/createRoom`, {});
      assert.equal(room.status, 200);
      const roomId = room.body.room_id as string;
      const sent = await c.put(`${R0}/rooms/${enc(roomId)}/send/m.room.message/nio1`, {
        msgtype: 'm.text',
        body: 'hello from r0',
      });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      const eventId = sent.body.event_id as string;

      const messages = await c.get(`${R0}/rooms/${enc(roomId)}/messages?dir=b&limit=5`);
      assert.equal(messages.status, 200);
      const chunk = messages.body.chunk as { event_id: string; content: { body?: string } }[];
      assert.equal(chunk.find((e) => e.event_id === eventId)?.content.body, 'hello from r0');

      const sync = await c.get(`${R0}/sync?timeout=0`);
      assert.equal(sync.status, 200);
      assert.equal(typeof sync.body.next_batch, 'string');
      const joined = (
        sync.body.rooms as { join: Record<string, { timeline: { events: { event_id: string }[] } }> }
      ).join;
      assert.ok(joined[roomId]?.timeline.events.some((e) => e.event_id === eventId));

      const whoami = await c.get(`${R0}/account/whoami`);
      assert.equal(whoami.body.user_id, '@nio:test.local');
      const logout = await c.post(`${R0}/logout`, {});
      assert.equal(logout.status, 200);
      assert.equal((await c.get('/_matrix/client/v3/account/whoami')).status, 401);
    });

    it('answers unknown r0 endpoints with 404 and wrong methods with 405, as on v3', async () => {
      const c = server.client();
      const unknown = await c.get(`${R0}/no/such/endpoint`);
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_UNRECOGNIZED');
      const method = await c.request('DELETE', `${R0}/login`);
      assert.equal(method.status, 405);
      assert.equal(method.body.errcode, 'M_UNRECOGNIZED');
      // Only the r0 prefix is an alias: other made-up versions are not.
      assert.equal((await c.get('/_matrix/client/r1/login')).status, 404);
    });

    it('serves the media API under /_matrix/media/r0', async () => {
      const alice = await server.user('r0media');
      const upload = await fetch(`${server.url}/_matrix/media/r0/upload?filename=a.txt`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'text/plain' },
        body: 'r0 bytes',
      });
      assert.equal(upload.status, 200);
      const uri = ((await upload.json()) as { content_uri: string }).content_uri;
      const [, serverName, mediaId] = /^mxc:\/\/([^/]+)\/(.+)$/.exec(uri) ?? [];
      const down = await fetch(`${server.url}/_matrix/client/v1/media/download/${serverName}/${mediaId}`, {
        headers: { authorization: `Bearer ${alice.token}` },
      });
      assert.equal(down.status, 200);
      assert.equal(await down.text(), 'r0 bytes');
      const config = await alice.get('/_matrix/media/r0/config');
      assert.equal(config.status, 200);
      assert.equal(typeof config.body['m.upload.size'], 'number');
      // The legacy download reaches its handler, which (as Synapse) refuses media uploaded as authenticated.
      const legacy = await alice.get(`/_matrix/media/r0/download/${serverName}/${mediaId}`);
      assert.equal(legacy.status, 404);
      assert.equal(legacy.body.errcode, 'M_NOT_FOUND');
    });

    it('serves the v1 client paths the spec keeps', async () => {
      const alice = await server.user('v1paths');
      const roomId = (await alice.post('/_matrix/client/v3/createRoom', {})).body.room_id as string;
      const ev = await alice.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/v1`, {
        msgtype: 'm.text',
        body: 'x',
      });
      const eventId = ev.body.event_id as string;
      const v1 = '/_matrix/client/v1';
      const paths = [
        `${v1}/rooms/${enc(roomId)}/hierarchy`,
        `${v1}/rooms/${enc(roomId)}/relations/${enc(eventId)}`,
        `${v1}/rooms/${enc(roomId)}/relations/${enc(eventId)}/m.annotation`,
        `${v1}/rooms/${enc(roomId)}/relations/${enc(eventId)}/m.annotation/m.reaction`,
        `${v1}/rooms/${enc(roomId)}/threads`,
        `${v1}/rooms/${enc(roomId)}/timestamp_to_event?ts=${Date.now()}&dir=b`,
        `${v1}/media/config`,
      ];
      for (const path of paths) {
        const res = await alice.get(path);
        assert.equal(res.status, 200, `${path}: ${JSON.stringify(res.body)}`);
      }
    });

    it('accepts the access token in the query string, the Authorization header winning over it', async () => {
      const alice = await server.user('qsalice');
      const bob = await server.user('qsbob');
      const anon = server.client();
      const q = await anon.get(`/_matrix/client/v3/account/whoami?access_token=${enc(alice.token ?? '')}`);
      assert.equal(q.status, 200);
      assert.equal(q.body.user_id, alice.userId);
      // r0 with a query token, as old bots do.
      const r0 = await anon.get(`${R0}/account/whoami?access_token=${enc(alice.token ?? '')}`);
      assert.equal(r0.body.user_id, alice.userId);
      // Both present: the header is used, the query parameter ignored.
      const both = await bob.get(`/_matrix/client/v3/account/whoami?access_token=${enc(alice.token ?? '')}`);
      assert.equal(both.body.user_id, bob.userId);
      const badQuery = await bob.get('/_matrix/client/v3/account/whoami?access_token=not_a_token');
      assert.equal(badQuery.status, 200);
      assert.equal(badQuery.body.user_id, bob.userId);
      const badHeader = await server
        .client('not_a_token')
        .get(`/_matrix/client/v3/account/whoami?access_token=${enc(alice.token ?? '')}`);
      assert.equal(badHeader.status, 401);
      assert.equal(badHeader.body.errcode, 'M_UNKNOWN_TOKEN');
      // An unknown query token is refused like an unknown header token.
      const unknown = await anon.get('/_matrix/client/v3/account/whoami?access_token=not_a_token');
      assert.equal(unknown.status, 401);
      assert.equal(unknown.body.errcode, 'M_UNKNOWN_TOKEN');
      // A body-taking endpoint with a query token.
      const room = await anon.post(
        `/_matrix/client/v3/createRoom?access_token=${enc(alice.token ?? '')}`,
        {},
      );
      assert.equal(room.status, 200);
      // An endpoint whose token is optional authenticates a query token (and refuses an unknown one).
      const pub = await anon.get('/_matrix/client/v3/publicRooms?access_token=not_a_token');
      assert.equal(pub.status, 401);
    });
  });
}

describe('query-string tokens in the logs', () => {
  it('logs the original r0 path with the token redacted', async () => {
    await withCapturedLogs({ rate_limiting: { enabled: false } }, 'debug', async (hs, lines) => {
      await createAccount(hs.storage.db, {
        localpart: 'logq',
        serverName: 'test.local',
        password: 'pw pw pw',
        admin: false,
      });
      const c = new Client(hs.urls[0] as string);
      const login = await c.post(`${R0}/login`, {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'logq' },
        password: 'pw pw pw',
      });
      assert.equal(login.status, 200, JSON.stringify(login.body));
      const token = login.body.access_token as string;
      const res = await c.get(`${R0}/account/whoami?access_token=${token}`);
      assert.equal(res.status, 200);
      // Also on the router's own refusals (no hook runs for them).
      await c.get(`${R0}/rooms/%FF/state?access_token=${token}`);
      const all = lines.join('\n');
      assert.ok(!all.includes(token), 'the access token reached the logs');
      const done = lines
        .map((l) => JSON.parse(l) as { msg?: string; url?: string })
        .filter((l) => l.url?.includes('whoami'));
      assert.ok(
        done.some((l) => l.url === `${R0}/account/whoami?access_token=<redacted>`),
        all,
      );
    });
  });
});
