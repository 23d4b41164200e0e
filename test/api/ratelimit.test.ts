import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createAccount } from '../../src/accounts/register.js';
import { RateLimiter } from '../../src/api/ratelimit.js';
import { MatrixError } from '../../src/api/errors.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('RateLimiter (token bucket)', () => {
  const rule = { per_second: 0.5, burst_count: 2 };

  it('allows a burst, then refuses with retry_after_ms until a token has refilled', () => {
    const rl = new RateLimiter(true);
    const t0 = 1_000_000;
    rl.check('k', rule, t0);
    rl.check('k', rule, t0);
    assert.throws(
      () => rl.check('k', rule, t0),
      (e: unknown) => e instanceof MatrixError && e.errcode === 'M_LIMIT_EXCEEDED' && e.status === 429,
    );
    try {
      rl.check('k', rule, t0 + 500);
      assert.fail('should be limited');
    } catch (e) {
      assert.ok(e instanceof MatrixError);
      // 0.25 of a token refilled; 0.75 left to wait at 0.5 tokens per second.
      assert.equal(e.extra.retry_after_ms, 1500);
    }
    // Two seconds after the start one full token is back.
    rl.check('k', rule, t0 + 2000);
    assert.throws(() => rl.check('k', rule, t0 + 2000));
  });

  it('keeps separate buckets per key and never exceeds the burst', () => {
    const rl = new RateLimiter(true);
    rl.check('a', rule, 0);
    rl.check('a', rule, 0);
    rl.check('b', rule, 0);
    // A long pause refills only up to burst_count.
    rl.check('a', rule, 3_600_000);
    rl.check('a', rule, 3_600_000);
    assert.throws(() => rl.check('a', rule, 3_600_000));
  });

  it('does nothing when disabled', () => {
    const rl = new RateLimiter(false);
    for (let i = 0; i < 100; i++) rl.check('k', rule, 0);
  });
});

for (const engine of ENGINES) {
  describe(`${engine}: rate limiting over HTTP`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(engine, {
        enable_registration: true,
        rate_limiting: {
          enabled: true,
          login: { per_second: 0.01, burst_count: 2 },
          register: { per_second: 0.01, burst_count: 2 },
        },
      });
      await createAccount(server.hs.storage.db, {
        localpart: 'limited',
        serverName: server.serverName,
        password: 'pw',
      });
    });
    after(() => server.close());

    it('answers repeated logins with 429 M_LIMIT_EXCEEDED and retry_after_ms', async () => {
      const login = () =>
        server.client().post('/_matrix/client/v3/login', {
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user: 'limited' },
          password: 'pw',
        });
      assert.equal((await login()).status, 200);
      assert.equal((await login()).status, 200);
      const res = await login();
      assert.equal(res.status, 429);
      assert.equal(res.body.errcode, 'M_LIMIT_EXCEEDED');
      assert.equal(typeof res.body.retry_after_ms, 'number');
      assert.ok((res.body.retry_after_ms as number) > 0);
      // Other endpoints are not affected by the login bucket.
      assert.equal((await server.client().get('/_matrix/client/versions')).status, 200);
    });

    it('limits registration requests too', async () => {
      const c = server.client();
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++)
        statuses.push((await c.get('/_matrix/client/v3/register/available?username=someone')).status);
      assert.deepEqual(statuses, [200, 200, 429]);
      const res = await c.post('/_matrix/client/v3/register', { username: 'someone', password: 'pw' });
      assert.equal(res.status, 429);
      assert.equal(res.body.errcode, 'M_LIMIT_EXCEEDED');
    });
  });
}
