import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { turnCredentials } from '../../src/api/client/voip.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const TURN = '/_matrix/client/v3/voip/turnServer';
const PROTOCOLS = '/_matrix/client/v3/thirdparty/protocols';
const URIS = ['turn:turn.test.local:3478?transport=udp', 'turns:turn.test.local:443?transport=tcp'];

describe('turnCredentials', () => {
  it('needs both URIs and a shared secret', () => {
    const lifetime = { turn_user_lifetime_ms: 1000 };
    assert.equal(turnCredentials({ ...lifetime, turn_uris: URIS }, '@a:b'), undefined);
    assert.equal(turnCredentials({ ...lifetime, turn_uris: [], turn_shared_secret: 's' }, '@a:b'), undefined);
  });

  it("uses Synapse's expiry:user_id username and HMAC-SHA1 password", () => {
    const creds = turnCredentials(
      { turn_uris: URIS, turn_shared_secret: 'secret', turn_user_lifetime_ms: 60_000 },
      '@a:b',
      1_700_000_000_500,
    );
    assert.deepEqual(creds, {
      username: '1700000060:@a:b',
      password: createHmac('sha1', 'secret').update('1700000060:@a:b').digest('base64'),
      uris: URIS,
      ttl: 60,
    });
  });
});

for (const engine of ENGINES) {
  describe(`${engine}: VoIP without a TURN server`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
    });
    after(() => server.close());

    it('answers an empty object', async () => {
      const res = await alice.get(TURN);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, {});
    });

    it('lists no third-party protocols', async () => {
      const res = await alice.get(PROTOCOLS);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, {});
    });

    it('requires a token', async () => {
      for (const path of [TURN, PROTOCOLS]) {
        const res = await server.client().get(path);
        assert.equal(res.status, 401, path);
        assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
      }
    });
  });

  describe(`${engine}: VoIP with a TURN server`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    before(async () => {
      server = await startTestServer(engine, {
        turn_uris: URIS,
        turn_shared_secret: 'turn-secret',
        turn_user_lifetime_ms: 3_600_000,
      });
      alice = await server.user('alice');
    });
    after(() => server.close());

    it('hands out time-limited credentials for the user', async () => {
      const now = Math.floor(Date.now() / 1000);
      const res = await alice.get(TURN);
      assert.equal(res.status, 200);
      const { username, password, uris, ttl } = res.body as {
        username: string;
        password: string;
        uris: string[];
        ttl: number;
      };
      const m = /^(\d+):(.+)$/.exec(username);
      assert.ok(m, username);
      assert.equal(m[2], alice.userId);
      const expiry = Number(m[1]);
      assert.ok(expiry >= now + 3600 - 1 && expiry <= now + 3600 + 5, `expiry ${expiry}`);
      assert.equal(password, createHmac('sha1', 'turn-secret').update(username).digest('base64'));
      assert.deepEqual(uris, URIS);
      assert.equal(ttl, 3600);
    });

    it('requires a token', async () => {
      const res = await server.client().get(TURN);
      assert.equal(res.status, 401);
      assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
    });
  });
}
