import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { getUser } from '../../src/storage/users.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const PATH = '/_synapse/admin/v1/register';
const SECRET = 'test-shared-secret'; // what startTestServer configures

/** The MAC exactly as Synapse's register_new_matrix_user computes it (hmac.new(secret, sha1), update per part). */
function synapseMac(
  secret: string,
  nonce: string,
  user: string,
  password: string,
  admin: boolean,
  userType?: string,
): string {
  const mac = createHmac('sha1', Buffer.from(secret, 'utf8'));
  mac.update(Buffer.from(nonce, 'utf8'));
  mac.update(Buffer.from([0]));
  mac.update(Buffer.from(user, 'utf8'));
  mac.update(Buffer.from([0]));
  mac.update(Buffer.from(password, 'utf8'));
  mac.update(Buffer.from([0]));
  mac.update(admin ? 'admin' : 'notadmin');
  if (userType) {
    mac.update(Buffer.from([0]));
    mac.update(Buffer.from(userType, 'utf8'));
  }
  return mac.digest('hex');
}

describe('shared-secret MAC', () => {
  it("matches Synapse's computation (vectors from Python's hmac)", () => {
    assert.equal(
      synapseMac(SECRET, 'abc123', 'Root', 'p4ss', true),
      'd0e8e4d3286adde4b68d25e7e75fa48c99d6b5b5',
    );
    assert.equal(
      synapseMac(SECRET, 'abc123', 'bot', 'p4ss', false, 'bot'),
      'caa2d3e3d81301673ab1cfc10a359b88ccfb6aed',
    );
  });
});

for (const engine of ENGINES) {
  describe(`${engine}: shared-secret registration`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine);
    });
    after(() => server.close());

    const nonce = async (): Promise<string> => {
      const res = await server.client().get(PATH);
      assert.equal(res.status, 200);
      assert.equal(typeof res.body.nonce, 'string');
      return res.body.nonce as string;
    };

    it('creates an admin user with a correct MAC', async () => {
      const n = await nonce();
      const res = await server.client().post(PATH, {
        nonce: n,
        username: 'Root',
        password: 'root-pw',
        admin: true,
        displayname: 'The Admin',
        mac: synapseMac(SECRET, n, 'Root', 'root-pw', true),
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.user_id, '@root:test.local');
      assert.equal(res.body.home_server, 'test.local');
      assert.equal(typeof res.body.device_id, 'string');

      const me = await server
        .client(res.body.access_token as string)
        .get('/_matrix/client/v3/account/whoami');
      assert.equal(me.status, 200);
      assert.equal(me.body.user_id, '@root:test.local');
      const user = await getUser(server.hs.storage.db, '@root:test.local');
      assert.equal(user?.is_admin, 1);
      assert.equal(user?.displayname, 'The Admin');

      const login = await server.client().post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'root' },
        password: 'root-pw',
      });
      assert.equal(login.status, 200);
    });

    it('creates a non-admin user, with a user_type', async () => {
      const n = await nonce();
      const res = await server.client().post(PATH, {
        nonce: n,
        username: 'bot',
        password: 'bot-pw',
        admin: false,
        user_type: 'bot',
        mac: synapseMac(SECRET, n, 'bot', 'bot-pw', false, 'bot'),
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const user = await getUser(server.hs.storage.db, '@bot:test.local');
      assert.equal(user?.is_admin, 0);
      assert.equal(user?.user_type, 'bot');
    });

    it('rejects a wrong MAC with 403 M_FORBIDDEN and creates nothing', async () => {
      const n = await nonce();
      const wrongSecret = await server.client().post(PATH, {
        nonce: n,
        username: 'eve',
        password: 'pw',
        admin: false,
        mac: synapseMac('other-secret', n, 'eve', 'pw', false),
      });
      assert.equal(wrongSecret.status, 403);
      assert.equal(wrongSecret.body.errcode, 'M_FORBIDDEN');
      // admin: true with a MAC over "notadmin" is refused (no privilege escalation).
      const n2 = await nonce();
      const escalate = await server.client().post(PATH, {
        nonce: n2,
        username: 'eve',
        password: 'pw',
        admin: true,
        mac: synapseMac(SECRET, n2, 'eve', 'pw', false),
      });
      assert.equal(escalate.status, 403);
      assert.equal(escalate.body.errcode, 'M_FORBIDDEN');
      assert.equal(await getUser(server.hs.storage.db, '@eve:test.local'), undefined);
    });

    it('refuses a reused or unknown nonce', async () => {
      const n = await nonce();
      const body = (name: string) => ({
        nonce: n,
        username: name,
        password: 'pw',
        admin: false,
        mac: synapseMac(SECRET, n, name, 'pw', false),
      });
      assert.equal((await server.client().post(PATH, body('once'))).status, 200);
      const again = await server.client().post(PATH, body('twice'));
      assert.equal(again.status, 400);
      assert.equal(again.body.errcode, 'M_UNKNOWN');
      assert.equal(await getUser(server.hs.storage.db, '@twice:test.local'), undefined);

      const unknown = await server.client().post(PATH, {
        nonce: 'made-up',
        username: 'x',
        password: 'pw',
        mac: synapseMac(SECRET, 'made-up', 'x', 'pw', false),
      });
      assert.equal(unknown.status, 400);
    });

    it('a nonce is spent even by a failed attempt', async () => {
      const n = await nonce();
      const bad = await server
        .client()
        .post(PATH, { nonce: n, username: 'frank', password: 'pw', mac: '00'.repeat(20) });
      assert.equal(bad.status, 403);
      const retry = await server.client().post(PATH, {
        nonce: n,
        username: 'frank',
        password: 'pw',
        mac: synapseMac(SECRET, n, 'frank', 'pw', false),
      });
      assert.equal(retry.status, 400);
    });

    it('refuses a taken name with M_USER_IN_USE', async () => {
      const n = await nonce();
      const res = await server.client().post(PATH, {
        nonce: n,
        username: 'root',
        password: 'pw',
        mac: synapseMac(SECRET, n, 'root', 'pw', false),
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_USER_IN_USE');
    });
  });
}

describe('shared-secret registration without a secret', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer('sqlite', { registration_shared_secret: undefined });
  });
  after(() => server.close());

  it('answers 400 to both the nonce request and the registration', async () => {
    const get = await server.client().get(PATH);
    assert.equal(get.status, 400);
    assert.equal(get.body.nonce, undefined);
    const post = await server.client().post(PATH, {
      nonce: 'n',
      username: 'x',
      password: 'pw',
      mac: synapseMac('', 'n', 'x', 'pw', false),
    });
    assert.equal(post.status, 400);
  });
});
