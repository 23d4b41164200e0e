import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const DEVICES = '/_matrix/client/v3/devices';
const WHOAMI = '/_matrix/client/v3/account/whoami';
const PASSWORD = 'devices password';

interface Device {
  device_id: string;
  display_name?: string;
  last_seen_ts?: number;
}

for (const engine of ENGINES) {
  describe(`${engine}: device management`, () => {
    let server: TestServer;
    let dave: Client & { userId: string; deviceId: string };
    before(async () => {
      server = await startTestServer(engine);
      dave = await server.user('dave', { password: PASSWORD });
    });
    after(() => server.close());

    /** Logs dave in on a new device; returns a client holding its token. */
    const newSession = async (extra: Record<string, unknown> = {}) => {
      const res = await server.client().post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'dave' },
        password: PASSWORD,
        ...extra,
      });
      assert.equal(res.status, 200);
      return {
        client: server.client(res.body.access_token as string),
        deviceId: res.body.device_id as string,
      };
    };

    const passwordAuth = (session: unknown, password = PASSWORD) => ({
      type: 'm.login.password',
      identifier: { type: 'm.id.user', user: dave.userId },
      password,
      session,
    });

    it('lists, gets and renames devices', async () => {
      const laptop = await newSession({ initial_device_display_name: 'Laptop' });
      const list = await dave.get(DEVICES);
      assert.equal(list.status, 200);
      const devices = list.body.devices as Device[];
      assert.ok(devices.some((d) => d.device_id === dave.deviceId));
      const found = devices.find((d) => d.device_id === laptop.deviceId);
      assert.equal(found?.display_name, 'Laptop');
      assert.equal(typeof found?.last_seen_ts, 'number');

      const one = await dave.get(`${DEVICES}/${laptop.deviceId}`);
      assert.equal(one.status, 200);
      assert.equal(one.body.device_id, laptop.deviceId);
      assert.equal(one.body.display_name, 'Laptop');

      const put = await dave.put(`${DEVICES}/${laptop.deviceId}`, { display_name: 'Work laptop' });
      assert.equal(put.status, 200);
      assert.deepEqual(put.body, {});
      const renamed = await laptop.client.get(`${DEVICES}/${laptop.deviceId}`);
      assert.equal(renamed.body.display_name, 'Work laptop');
      // A body without display_name leaves it alone.
      assert.equal((await dave.put(`${DEVICES}/${laptop.deviceId}`, {})).status, 200);
      assert.equal((await dave.get(`${DEVICES}/${laptop.deviceId}`)).body.display_name, 'Work laptop');
    });

    it('answers an unknown device with 404 M_NOT_FOUND', async () => {
      for (const method of ['GET', 'PUT', 'DELETE'] as const) {
        const res = await dave.request(method, `${DEVICES}/NOSUCHDEVICE`, method === 'GET' ? undefined : {});
        assert.equal(res.status, 404, method);
        assert.equal(res.body.errcode, 'M_NOT_FOUND', method);
      }
    });

    it("does not show or touch another user's devices", async () => {
      const other = await server.user('other-user');
      const res = await other.get(`${DEVICES}/${dave.deviceId}`);
      assert.equal(res.status, 404);
      assert.equal(res.body.errcode, 'M_NOT_FOUND');
      const list = (await other.get(DEVICES)).body.devices as Device[];
      assert.deepEqual(
        list.map((d) => d.device_id),
        [other.deviceId],
      );
    });

    it('deletes a device after password user-interactive auth', async () => {
      const phone = await newSession();
      const path = `${DEVICES}/${phone.deviceId}`;

      const first = await dave.delete(path, {});
      assert.equal(first.status, 401);
      assert.deepEqual(first.body.flows, [{ stages: ['m.login.password'] }]);
      assert.equal(typeof first.body.session, 'string');

      // A wrong password fails the stage: 401 with M_FORBIDDEN and the flows again, as the spec shows.
      const wrong = await dave.delete(path, { auth: passwordAuth(first.body.session, 'wrong') });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
      assert.deepEqual(wrong.body.flows, [{ stages: ['m.login.password'] }]);
      assert.equal(wrong.body.session, first.body.session);
      assert.deepEqual(wrong.body.completed, []);
      assert.equal((await phone.client.get(WHOAMI)).status, 200);

      // Authenticating as somebody else is refused too.
      const other = await dave.delete(path, {
        auth: { ...passwordAuth(first.body.session), identifier: { type: 'm.id.user', user: 'other-user' } },
      });
      assert.equal(other.body.errcode, 'M_FORBIDDEN');
      assert.equal((await phone.client.get(WHOAMI)).status, 200);

      const ok = await dave.delete(path, { auth: passwordAuth(first.body.session) });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const gone = await phone.client.get(WHOAMI);
      assert.equal(gone.status, 401);
      assert.equal(gone.body.errcode, 'M_UNKNOWN_TOKEN');
      assert.equal((await dave.get(path)).status, 404);
      assert.equal((await dave.get(WHOAMI)).status, 200);
    });

    it('does not let a UIA session started for one device delete another', async () => {
      const a = await newSession();
      const b = await newSession();
      const first = await dave.delete(`${DEVICES}/${a.deviceId}`, {});
      assert.equal(first.status, 401);
      const res = await dave.delete(`${DEVICES}/${b.deviceId}`, { auth: passwordAuth(first.body.session) });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      assert.equal((await b.client.get(WHOAMI)).status, 200);
      // A session may not be carried over to another endpoint either.
      const pw = await dave.post('/_matrix/client/v3/account/password', {
        new_password: 'hijacked',
        auth: passwordAuth(first.body.session),
      });
      assert.equal(pw.status, 403);
      assert.equal(pw.body.errcode, 'M_FORBIDDEN');
    });

    it('deletes several devices with POST /delete_devices', async () => {
      const a = await newSession();
      const b = await newSession();
      const keep = await newSession();
      const body = { devices: [a.deviceId, b.deviceId] };
      const first = await dave.post('/_matrix/client/v3/delete_devices', body);
      assert.equal(first.status, 401);
      assert.deepEqual(first.body.flows, [{ stages: ['m.login.password'] }]);
      assert.equal((await a.client.get(WHOAMI)).status, 200);

      const ok = await dave.post('/_matrix/client/v3/delete_devices', {
        ...body,
        auth: passwordAuth(first.body.session),
      });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      for (const gone of [a, b]) {
        const res = await gone.client.get(WHOAMI);
        assert.equal(res.status, 401);
        assert.equal(res.body.errcode, 'M_UNKNOWN_TOKEN');
      }
      assert.equal((await keep.client.get(WHOAMI)).status, 200);
      const ids = ((await dave.get(DEVICES)).body.devices as Device[]).map((d) => d.device_id);
      assert.ok(!ids.includes(a.deviceId) && !ids.includes(b.deviceId));
      assert.ok(ids.includes(keep.deviceId) && ids.includes(dave.deviceId));

      const missing = await dave.post('/_matrix/client/v3/delete_devices', {});
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
    });

    it('requires a token', async () => {
      const res = await server.client().get(DEVICES);
      assert.equal(res.status, 401);
      assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
    });
  });
}
