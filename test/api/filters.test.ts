import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

/** The example of filter.yaml, with every documented field and an extension key. */
const FULL_FILTER = {
  room: {
    rooms: ['!a:test.local'],
    not_rooms: ['!726s6s6q:example.com'],
    include_leave: true,
    state: {
      types: ['m.room.*'],
      not_rooms: ['!726s6s6q:example.com'],
      lazy_load_members: true,
      include_redundant_members: false,
      contains_url: false,
      unread_thread_notifications: true,
    },
    timeline: {
      limit: 10,
      types: ['m.room.message'],
      not_senders: ['@spam:example.com'],
      contains_url: true,
    },
    ephemeral: { types: ['m.receipt', 'm.typing'], not_rooms: ['!726s6s6q:example.com'] },
    account_data: { not_types: ['*'] },
  },
  presence: {
    types: ['m.presence'],
    not_senders: ['@alice:example.com'],
    senders: ['@bob:example.com'],
    limit: 5,
  },
  account_data: { types: ['m.push_rules'] },
  event_format: 'client',
  event_fields: ['type', 'content', 'sender'],
  'org.example.extension': { kept: true },
};

for (const engine of ENGINES) {
  describe(`${engine}: filters`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let bob: Client & { userId: string };
    const path = (userId: string, id?: string): string =>
      `/_matrix/client/v3/user/${userId}/filter${id === undefined ? '' : `/${id}`}`;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
    });
    after(() => server.close());

    it('stores a filter and returns it unchanged', async () => {
      const res = await alice.post(path(alice.userId), FULL_FILTER);
      assert.equal(res.status, 200);
      const id = res.body.filter_id;
      assert.equal(typeof id, 'string');
      assert.ok(!(id as string).startsWith('{'));
      const get = await alice.get(path(alice.userId, id as string));
      assert.equal(get.status, 200);
      assert.deepEqual(get.body, FULL_FILTER);
    });

    it('accepts an empty filter and gives each filter its own id', async () => {
      const a = await alice.post(path(alice.userId), {});
      const b = await alice.post(path(alice.userId), { room: { timeline: { limit: 1 } } });
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      assert.notEqual(a.body.filter_id, b.body.filter_id);
      assert.deepEqual((await alice.get(path(alice.userId, a.body.filter_id as string))).body, {});
      assert.deepEqual((await alice.get(path(alice.userId, b.body.filter_id as string))).body, {
        room: { timeline: { limit: 1 } },
      });
    });

    it('rejects fields of the wrong type with M_BAD_JSON naming the field', async () => {
      const cases: [unknown, string][] = [
        [{ room: { timeline: { limit: '10' } } }, 'room.timeline.limit'],
        [{ room: { timeline: { limit: -1 } } }, 'room.timeline.limit'],
        [{ room: { timeline: { limit: 1.5 } } }, 'room.timeline.limit'],
        [{ event_format: 'xml' }, 'event_format'],
        [{ event_fields: 'type' }, 'event_fields'],
        [{ presence: { senders: ['bob'] } }, 'presence.senders'],
        [{ account_data: { types: [1] } }, 'account_data.types'],
        [{ room: { rooms: ['#alias:test.local'] } }, 'room.rooms'],
        [{ room: { include_leave: 'yes' } }, 'room.include_leave'],
        [{ room: { state: { lazy_load_members: 1 } } }, 'room.state.lazy_load_members'],
        [{ room: { ephemeral: { not_senders: 'x' } } }, 'room.ephemeral.not_senders'],
        [{ room: { account_data: { contains_url: 'no' } } }, 'room.account_data.contains_url'],
        [{ room: 'all' }, 'room'],
      ];
      for (const [filter, field] of cases) {
        const res = await alice.post(path(alice.userId), filter);
        assert.equal(res.status, 400, JSON.stringify(filter));
        assert.equal(res.body.errcode, 'M_BAD_JSON', JSON.stringify(filter));
        assert.ok((res.body.error as string).includes(field), `${res.body.error as string} names ${field}`);
      }
    });

    it('rejects a body that is not a JSON object with M_NOT_JSON', async () => {
      const res = await alice.request('POST', path(alice.userId), undefined, { raw: '[]' });
      assert.equal(res.status, 400);
      assert.equal(res.body.errcode, 'M_NOT_JSON');
    });

    it('forbids uploading and reading filters of other users', async () => {
      const own = await bob.post(path(bob.userId), {});
      const post = await alice.post(path(bob.userId), {});
      assert.equal(post.status, 403);
      assert.equal(post.body.errcode, 'M_FORBIDDEN');
      const get = await alice.get(path(bob.userId, own.body.filter_id as string));
      assert.equal(get.status, 403);
      assert.equal(get.body.errcode, 'M_FORBIDDEN');
    });

    it('answers 404 M_NOT_FOUND for unknown filter ids', async () => {
      // Bob owns more filters than Alice: his ids are not hers.
      let last = '';
      for (let i = 0; i < 6; i++)
        last = (await bob.post(path(bob.userId), { event_fields: [`f${i}`] })).body.filter_id as string;
      assert.equal((await bob.get(path(bob.userId, last))).status, 200);
      for (const id of [last, '999999', 'abc', '-1', '01']) {
        const res = await alice.get(path(alice.userId, id));
        assert.equal(res.status, 404, id);
        assert.equal(res.body.errcode, 'M_NOT_FOUND');
      }
    });

    it('requires a token', async () => {
      const res = await server.client().post(path(alice.userId), {});
      assert.equal(res.status, 401);
      assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
    });
  });
}
