/** Logs: JSON lines, request id and user id on request lines, and no secrets or message bodies. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createAccount } from '../src/accounts/register.js';
import { validateConfig } from '../src/config/load.js';
import { withCapturedLogs } from './helpers/logs.js';
import { Client } from './helpers/server.js';

describe('logs', () => {
  it('carry request and user ids and never a password, token or message body', async () => {
    await withCapturedLogs(
      { log_level: 'trace', rate_limiting: { enabled: false }, enable_registration: true },
      'trace',
      async (hs, lines) => {
        const password = 'hunter2-very-secret-pw';
        const body = 'the body of a private message';
        const c = new Client(hs.urls[0] as string);
        const reg = await c.post('/_matrix/client/v3/register', {
          username: 'logger',
          password,
          auth: { type: 'm.login.dummy' },
        });
        assert.equal(reg.status, 200, JSON.stringify(reg.body));
        await createAccount(hs.storage.db, { localpart: 'other', serverName: 'test.local', password });
        const login = await c.post('/_matrix/client/v3/login', {
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user: 'logger' },
          password,
        });
        const token = login.body.access_token as string;
        c.token = token;
        const room = (await c.post('/_matrix/client/v3/createRoom', {})).body.room_id as string;
        await c.put(`/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/1`, {
          msgtype: 'm.text',
          body,
        });
        // A token in the query string is refused and must not be logged either.
        await fetch(`${hs.urls[0] as string}/_matrix/client/v3/sync?access_token=${token}`);
        await new Promise((r) => setTimeout(r, 50));

        const all = lines.join('\n');
        for (const secret of [password, token, body, reg.body.access_token as string]) {
          assert.ok(!all.includes(secret), `logs contain ${secret}`);
        }
        const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
        const done = parsed.filter((l) => l.msg === 'request done');
        assert.ok(done.length >= 5);
        for (const l of done) assert.equal(typeof l.reqId, 'string');
        const send = done.find((l) => String(l.url).includes('/send/'));
        assert.equal(send?.user_id, '@logger:test.local');
      },
    );
  });

  it('honours per-module levels: log_levels.http silences request lines only', async () => {
    await withCapturedLogs({ log_level: 'info', log_levels: { http: 'warn' } }, 'info', async (hs, lines) => {
      const res = await fetch(`${hs.urls[0] as string}/_matrix/client/versions`);
      assert.equal(res.status, 200);
      await new Promise((r) => setTimeout(r, 50));
      const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(parsed.filter((l) => l.msg === 'request done').length, 0);
      assert.throws(
        () => validateConfig({ ...hs.config, log_levels: { nosuch: 'info' } }, '/'),
        /log_levels/,
      );
    });
  });
});
