/** Operating limits: joins and invites are rate limited per user and per IP (admins exempt) and recover. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('join and invite rate limits', () => {
  let ts: TestServer;
  const loose = { per_second: 100, burst_count: 100 };
  before(async () => {
    ts = await startTestServer('sqlite', {
      rate_limiting: {
        enabled: true,
        login: loose,
        register: loose,
        message: loose,
        // One token a second: slow enough that a loaded machine does not refill the bucket between two requests.
        joins: { per_second: 1, burst_count: 2 },
        invites: { per_second: 1, burst_count: 1 },
      },
    });
  });
  after(() => ts.close());

  it('answers 429 M_LIMIT_EXCEEDED with retry_after_ms, and recovers after that time', async () => {
    const owner = await ts.user('rlowner');
    const joiner = await ts.user('rljoiner');
    const room = (await owner.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
      .room_id as string;
    const join = () => joiner.post(`/_matrix/client/v3/join/${encodeURIComponent(room)}`);
    assert.equal((await join()).status, 200);
    assert.equal((await join()).status, 200);
    const limited = await join();
    assert.equal(limited.status, 429);
    assert.equal(limited.body.errcode, 'M_LIMIT_EXCEEDED');
    const wait = limited.body.retry_after_ms as number;
    assert.ok(wait > 0 && wait <= 1000, `retry_after_ms ${wait}`);
    await new Promise((r) => setTimeout(r, wait + 20));
    assert.equal((await join()).status, 200);

    const invite = (user: string) =>
      owner.post(`/_matrix/client/v3/rooms/${encodeURIComponent(room)}/invite`, { user_id: user });
    assert.equal((await invite('@a:test.local')).status, 200);
    const second = await invite('@b:test.local');
    assert.equal(second.status, 429);
    assert.equal(typeof second.body.retry_after_ms, 'number');
  });

  it('exempts server admins', async () => {
    const admin = await ts.user('rladmin', { admin: true });
    const room = (await admin.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' })).body
      .room_id as string;
    for (let i = 0; i < 4; i++) {
      assert.equal(
        (
          await admin.post(`/_matrix/client/v3/rooms/${encodeURIComponent(room)}/invite`, {
            user_id: `@x${i}:test.local`,
          })
        ).status,
        200,
      );
    }
  });
});
