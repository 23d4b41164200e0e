import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setPresenceFromSync } from '../../src/api/client/presence.js';
import { getPresence } from '../../src/storage/presence.js';
import { presenceContent, presenceEventsFor } from '../../src/sync/ephemeral.js';
import { Notifier } from '../../src/sync/notifier.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string };
const status = (userId: string): string => `/_matrix/client/v3/presence/${encodeURIComponent(userId)}/status`;

describe('presenceContent', () => {
  it('formats like Synapse: currently_active only when online, and only within a minute', () => {
    const now = 1_000_000;
    assert.deepEqual(
      presenceContent(
        { state: 'online', statusMsg: 'hi', lastActiveTs: now - 10, currentlyActive: true },
        now,
      ),
      { presence: 'online', last_active_ago: 10, status_msg: 'hi', currently_active: true },
    );
    assert.deepEqual(
      presenceContent(
        { state: 'online', statusMsg: null, lastActiveTs: now - 61_000, currentlyActive: true },
        now,
      ),
      { presence: 'online', last_active_ago: 61_000, currently_active: false },
    );
    assert.deepEqual(
      presenceContent({ state: 'offline', statusMsg: '', lastActiveTs: 0, currentlyActive: false }, now),
      { presence: 'offline' },
    );
  });
});

for (const engine of ENGINES) {
  describe(`${engine}: presence`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;
    let carol: User;
    const deps = () => ({ config: server.hs.config, storage: server.hs.storage, notifier: new Notifier() });

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      carol = await server.user('carol');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const rid = encodeURIComponent(created.body.room_id as string);
      assert.equal((await bob.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);
    });
    after(() => server.close());

    it('answers offline for a user who never set presence', async () => {
      const res = await alice.get(status(bob.userId));
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { presence: 'offline' });
    });

    it('sets and reads back presence and status message', async () => {
      const put = await alice.put(status(alice.userId), { presence: 'online', status_msg: 'Busy coding' });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual(put.body, {});
      for (const who of [alice, bob]) {
        const res = await who.get(status(alice.userId));
        assert.equal(res.status, 200);
        assert.equal(res.body.presence, 'online');
        assert.equal(res.body.status_msg, 'Busy coding');
        assert.equal(res.body.currently_active, true);
        assert.ok(typeof res.body.last_active_ago === 'number' && res.body.last_active_ago < 10_000);
      }
      // The status message is replaced, and cleared when absent (as Synapse).
      await alice.put(status(alice.userId), { presence: 'unavailable' });
      const res = await bob.get(status(alice.userId));
      assert.equal(res.body.presence, 'unavailable');
      assert.equal('status_msg' in res.body, false);
      assert.equal('currently_active' in res.body, false);
      assert.equal(typeof res.body.last_active_ago, 'number', 'keeps the last online activity');
    });

    it('delivers changes as m.presence events by stream range', async () => {
      const since = server.hs.storage.stream.current;
      await bob.put(status(bob.userId), { presence: 'online', status_msg: 'here' });
      const to = server.hs.storage.stream.current;
      const delta = await presenceEventsFor(server.hs.storage.db, [alice.userId, bob.userId], since, to);
      assert.equal(delta.length, 1);
      assert.equal(delta[0]?.type, 'm.presence');
      assert.equal(delta[0]?.sender, bob.userId);
      assert.equal(delta[0]?.content.presence, 'online');
      assert.equal(delta[0]?.content.status_msg, 'here');
      assert.deepEqual(await presenceEventsFor(server.hs.storage.db, [bob.userId], to, to), []);

      await carol.put(status(carol.userId), { presence: 'offline' });
      const now = server.hs.storage.stream.current;
      const initial = await presenceEventsFor(
        server.hs.storage.db,
        [alice.userId, bob.userId, carol.userId],
        null,
        now,
      );
      assert.deepEqual(
        initial.map((e) => e.sender).sort(),
        [alice.userId, bob.userId].sort(),
        'initial sync omits offline',
      );
      const incremental = await presenceEventsFor(server.hs.storage.db, [carol.userId], to, now);
      assert.equal(incremental[0]?.content.presence, 'offline', 'incremental sync reports going offline');
    });

    it("refuses to set another user's presence with 403 M_FORBIDDEN", async () => {
      const res = await bob.put(status(alice.userId), { presence: 'offline' });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      assert.equal((await alice.get(status(alice.userId))).body.presence, 'unavailable');
    });

    it('hides presence from users who share no room with 403 M_FORBIDDEN', async () => {
      const res = await carol.get(status(alice.userId));
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      assert.equal((await carol.get(status(carol.userId))).status, 200, 'always visible to yourself');
      const bad = await carol.get(status('not-a-user'));
      assert.equal(bad.status, 400);
      assert.equal(bad.body.errcode, 'M_INVALID_PARAM');
    });

    it('validates the body', async () => {
      const cases: [unknown, string][] = [
        [{ presence: 'busy' }, 'M_BAD_JSON'],
        [{}, 'M_MISSING_PARAM'],
        [{ presence: 'online', status_msg: 5 }, 'M_BAD_JSON'],
        [{ presence: 'online', extra: true }, 'M_BAD_JSON'],
      ];
      for (const [body, errcode] of cases) {
        const res = await alice.put(status(alice.userId), body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.errcode, errcode, JSON.stringify(body));
      }
    });

    it('writes presence from /sync only when it changes or activity is a minute old', async () => {
      const db = server.hs.storage.db;
      const user = '@syncer:test.local';
      await setPresenceFromSync(deps(), user, 'offline');
      assert.equal(await getPresence(db, user), undefined, 'offline does not touch presence');
      const t0 = Date.now();
      await setPresenceFromSync(deps(), user, 'online', t0);
      const first = await getPresence(db, user);
      assert.equal(first?.state, 'online');
      assert.equal(first?.currentlyActive, true);
      await setPresenceFromSync(deps(), user, 'online', t0 + 30_000);
      assert.equal((await getPresence(db, user))?.streamPos, first?.streamPos, 'no write within a minute');
      await setPresenceFromSync(deps(), user, 'online', t0 + 61_000);
      const bumped = await getPresence(db, user);
      assert.ok((bumped?.streamPos ?? 0) > (first?.streamPos ?? 0));
      assert.equal(bumped?.lastActiveTs, t0 + 61_000);
      await setPresenceFromSync(deps(), user, 'unavailable', t0 + 62_000);
      const idle = await getPresence(db, user);
      assert.equal(idle?.state, 'unavailable');
      assert.equal(idle?.lastActiveTs, t0 + 61_000);
      await setPresenceFromSync(deps(), user, 'unavailable', t0 + 999_000);
      assert.equal((await getPresence(db, user))?.streamPos, idle?.streamPos);
    });

    it('follows a PUT between two syncs (the remembered row is replaced by the write)', async () => {
      const presenceOf = async () => (await alice.get(status(carol.userId))).body.presence;
      const carolSync = (set: string) => carol.get(`/_matrix/client/v3/sync?timeout=0&set_presence=${set}`);
      // Carol shares no room with alice yet: join so that her presence is visible.
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const rid = encodeURIComponent(created.body.room_id as string);
      assert.equal((await carol.post(`/_matrix/client/v3/rooms/${rid}/join`, {})).status, 200);
      assert.equal((await carolSync('online')).status, 200);
      assert.equal(await presenceOf(), 'online');
      const put = await carol.put(status(carol.userId), { presence: 'unavailable' });
      assert.equal(put.status, 200);
      assert.equal(await presenceOf(), 'unavailable');
      assert.equal((await carolSync('online')).status, 200);
      assert.equal(await presenceOf(), 'online', 'the sync after the PUT sets online again');
    });

    it('keeps stream positions above stored presence across a restart', async () => {
      await alice.put(status(alice.userId), { presence: 'online' });
      const row = await getPresence(server.hs.storage.db, alice.userId);
      await server.stop();
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      assert.ok(server.hs.storage.stream.current >= (row?.streamPos ?? Infinity));
      const again = await server.client().post('/_matrix/client/v3/login', {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'alice' },
        password: 'correct horse battery staple',
      });
      const c = server.client(again.body.access_token as string);
      assert.equal((await c.get(status(alice.userId))).body.presence, 'online');
    });
  });

  describe(`${engine}: presence disabled`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;

    before(async () => {
      server = await startTestServer(engine, { presence: { enabled: false } });
      alice = await server.user('alice');
      bob = await server.user('bob');
    });
    after(() => server.close());

    it('accepts PUT without storing, answers offline to GET, and ignores /sync', async () => {
      const put = await alice.put(status(alice.userId), { presence: 'online', status_msg: 'hello' });
      assert.equal(put.status, 200);
      assert.deepEqual((await alice.get(status(alice.userId))).body, { presence: 'offline' });
      assert.deepEqual((await bob.get(status(alice.userId))).body, { presence: 'offline' });
      await setPresenceFromSync(
        { config: server.hs.config, storage: server.hs.storage, notifier: new Notifier() },
        alice.userId,
        'online',
      );
      const rows = await server.hs.storage.db.selectFrom('presence').selectAll().execute();
      assert.deepEqual(rows, []);
    });

    it('still refuses setting the presence of others', async () => {
      const res = await bob.put(status(alice.userId), { presence: 'online' });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
    });
  });
}
