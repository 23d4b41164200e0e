import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

const PR = '/_matrix/client/v3/pushrules';
const G = `${PR}/global`;

interface Rule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: unknown[];
  conditions?: Record<string, unknown>[];
  pattern?: string;
}
type Ruleset = Record<'override' | 'content' | 'room' | 'sender' | 'underride', Rule[]>;

const DEFAULT_OVERRIDE = [
  '.m.rule.master',
  '.m.rule.suppress_notices',
  '.m.rule.invite_for_me',
  '.m.rule.member_event',
  '.m.rule.is_user_mention',
  '.m.rule.is_room_mention',
  '.m.rule.tombstone',
  '.m.rule.reaction',
  '.m.rule.room.server_acl',
  '.m.rule.suppress_edits',
];
const DEFAULT_UNDERRIDE = [
  '.m.rule.call',
  '.m.rule.encrypted_room_one_to_one',
  '.m.rule.room_one_to_one',
  '.m.rule.message',
  '.m.rule.encrypted',
];

const ids = (rules: Rule[]): string[] => rules.map((r) => r.rule_id);

for (const engine of ENGINES) {
  describe(`${engine}: push rules`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let bob: Client & { userId: string };
    const ruleset = async (c: Client = alice): Promise<Ruleset> =>
      (await c.get(`${G}/`)).body as unknown as Ruleset;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
    });
    after(() => server.close());

    it("serves the spec's server-default rules for the user", async () => {
      const res = await bob.get(`${PR}/`);
      assert.equal(res.status, 200);
      const global = res.body.global as Ruleset;
      assert.deepEqual(ids(global.override), DEFAULT_OVERRIDE);
      assert.deepEqual(ids(global.underride), DEFAULT_UNDERRIDE);
      assert.deepEqual([global.content, global.room, global.sender], [[], [], []]);
      for (const r of [...global.override, ...global.underride]) {
        assert.equal(r.default, true, r.rule_id);
        assert.equal(r.enabled, r.rule_id !== '.m.rule.master', r.rule_id);
        assert.ok(Array.isArray(r.conditions), r.rule_id);
      }
      const invite = global.override.find((r) => r.rule_id === '.m.rule.invite_for_me');
      assert.deepEqual(invite?.conditions?.[2], {
        kind: 'event_match',
        key: 'state_key',
        pattern: bob.userId,
      });
      const mention = global.override.find((r) => r.rule_id === '.m.rule.is_user_mention');
      assert.deepEqual(mention?.conditions, [
        { kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: bob.userId },
      ]);
      assert.deepEqual(mention?.actions, [
        'notify',
        { set_tweak: 'sound', value: 'default' },
        { set_tweak: 'highlight' },
      ]);
      assert.deepEqual((await bob.get(`${G}/`)).body, global);
    });

    it('serves a single rule, and 404 M_NOT_FOUND for unknown ones', async () => {
      const res = await alice.get(`${G}/underride/.m.rule.call`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, {
        rule_id: '.m.rule.call',
        default: true,
        enabled: true,
        conditions: [{ kind: 'event_match', key: 'type', pattern: 'm.call.invite' }],
        actions: ['notify', { set_tweak: 'sound', value: 'ring' }],
      });
      for (const p of [`${G}/override/.m.rule.call`, `${G}/content/nope`, `${G}/content/nope/enabled`]) {
        const missing = await alice.get(p);
        assert.equal(missing.status, 404, p);
        assert.equal(missing.body.errcode, 'M_NOT_FOUND');
      }
      const badKind = await alice.get(`${G}/everything/.m.rule.call`);
      assert.equal(badKind.status, 400);
      assert.equal(badKind.body.errcode, 'M_UNRECOGNIZED');
    });

    it('answers malformed paths with 400 M_UNRECOGNIZED, as Synapse (SyTest 61push/80torture)', async () => {
      const carol = await server.user('carol');
      const putCases: [string, unknown][] = [
        ['/', {}],
        [`/not_a_scope/room/${encodeURIComponent('#spam:example.com')}`, { actions: ['notify'] }],
        ['/global', { actions: ['notify'] }],
        ['/global/room', { actions: ['notify'] }],
        ['/global/room/', { actions: ['notify'] }],
        ['/global/not_a_template/foo', { actions: ['notify'] }],
        ['/global/override/.m.rule.master/not_an_attr', { enabled: true }],
      ];
      for (const [path, body] of putCases) {
        const res = await carol.put(`${PR}${path}`, body);
        assert.equal(res.status, 400, `PUT ${path}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, 'M_UNRECOGNIZED', `PUT ${path}`);
      }
      const badValue = await carol.put(`${G}/override/.m.rule.master/enabled`, { enabled: 'not a boolean' });
      assert.equal(badValue.status, 400);
      for (const path of [
        '/global',
        '/global/room',
        '/not_a_scope/',
        '/global/not_a_template/',
        '/global/override/.m.rule.master/not_an_attr',
      ]) {
        const res = await carol.get(`${PR}${path}`);
        assert.equal(res.status, 400, `GET ${path}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, 'M_UNRECOGNIZED', `GET ${path}`);
      }
      for (const path of ['/global/nope/x', '/notglobal/override/x', '/global/override/']) {
        const res = await carol.delete(`${PR}${path}`);
        assert.equal(res.status, 400, `DELETE ${path}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.errcode, 'M_UNRECOGNIZED', `DELETE ${path}`);
      }
      const noSlash = await carol.get(PR);
      assert.equal(noSlash.status, 404, 'GET /pushrules without the trailing slash');
      assert.equal(noSlash.body.errcode, 'M_UNRECOGNIZED');
      const unknownRule = await carol.get(`${G}/override/not_a_rule_id`);
      assert.equal(unknownRule.status, 404);
      assert.equal(unknownRule.body.errcode, 'M_NOT_FOUND');
      const unknownRulePut = await carol.put(`${G}/override/.not.a.default.rule/enabled`, { enabled: true });
      assert.equal(unknownRulePut.status, 404);
      const deleteAttr = await carol.delete(`${G}/override/.m.rule.master/enabled`);
      assert.equal(deleteAttr.status, 405);
      assert.equal((await carol.get(`${G}/override/.m.rule.master/enabled`)).body.enabled, false);
    });

    it('serves a kind’s rules and any attribute of a rule, as Synapse', async () => {
      const carol = await server.user('carol2');
      const override = await carol.get(`${G}/override/`);
      assert.equal(override.status, 200);
      assert.deepEqual(ids(override.body as unknown as Rule[]), DEFAULT_OVERRIDE);
      assert.deepEqual((await carol.get(`${G}/content/`)).body, []);
      assert.deepEqual((await carol.get(`${G}/override/.m.rule.master/enabled`)).body, { enabled: false });
      assert.deepEqual((await carol.get(`${G}/override/.m.rule.master/actions`)).body, { actions: [] });
      assert.deepEqual((await carol.get(`${G}/override/.m.rule.master/default`)).body, { default: true });
      const withEncodedId = `${G}/sender/${encodeURIComponent('@dave:example.com')}`;
      assert.equal((await carol.put(withEncodedId, { actions: ['notify'] })).status, 200);
      assert.equal((await carol.get(withEncodedId)).body.rule_id, '@dave:example.com');
      assert.equal((await carol.delete(withEncodedId)).status, 200);
      assert.equal((await carol.get(withEncodedId)).status, 404);
    });

    it('creates a content rule, enabled, with its pattern', async () => {
      const put = await alice.put(`${G}/content/cake`, { pattern: 'cake*lie', actions: ['notify'] });
      assert.equal(put.status, 200);
      assert.deepEqual(put.body, {});
      const expected = {
        rule_id: 'cake',
        default: false,
        enabled: true,
        pattern: 'cake*lie',
        actions: ['notify'],
      };
      assert.deepEqual((await alice.get(`${G}/content/cake`)).body, expected);
      assert.deepEqual((await ruleset()).content, [expected]);
      assert.deepEqual((await ruleset(bob)).content, []);
    });

    it('requires a pattern for content rules and actions for all', async () => {
      const noPattern = await alice.put(`${G}/content/nopattern`, { actions: ['notify'] });
      assert.equal(noPattern.status, 400);
      assert.equal(noPattern.body.errcode, 'M_MISSING_PARAM');
      assert.match(noPattern.body.error as string, /pattern/);
      const noActions = await alice.put(`${G}/override/noactions`, { conditions: [] });
      assert.equal(noActions.status, 400);
      assert.equal(noActions.body.errcode, 'M_MISSING_PARAM');
      assert.match(noActions.body.error as string, /actions/);
      for (const body of [{ actions: ['explode'] }, { actions: 'notify' }, { actions: [{ value: 1 }] }]) {
        const res = await alice.put(`${G}/override/badactions`, { ...body, conditions: [] });
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.errcode, 'M_BAD_JSON');
      }
      const noKind = await alice.put(`${G}/override/badcond`, { actions: [], conditions: [{ key: 'type' }] });
      assert.equal(noKind.status, 400);
      assert.equal(noKind.body.errcode, 'M_MISSING_PARAM');
      assert.match(noKind.body.error as string, /conditions\[0\]\.kind/);
      const badValue = await alice.put(`${G}/override/badcond`, {
        actions: [],
        conditions: [{ kind: 'event_property_is', key: 'x', value: { nested: true } }],
      });
      assert.equal(badValue.status, 400);
      assert.equal(badValue.body.errcode, 'M_BAD_JSON');
      assert.equal((await alice.get(`${G}/override/badcond`)).status, 404);
    });

    it('strips the historical dont_notify and coalesce actions', async () => {
      await alice.put(`${G}/sender/${encodeURIComponent('@spam:example.com')}`, {
        actions: ['dont_notify', 'coalesce'],
      });
      assert.deepEqual((await alice.get(`${G}/sender/${encodeURIComponent('@spam:example.com')}`)).body, {
        rule_id: '@spam:example.com',
        default: false,
        enabled: true,
        actions: [],
      });
    });

    it('refuses rule ids reserved for the server, or containing slashes', async () => {
      for (const ruleId of ['.m.rule.master', '.custom', 'a%2Fb', 'a%5Cb']) {
        const res = await alice.put(`${G}/override/${ruleId}`, { actions: [], conditions: [] });
        assert.equal(res.status, 400, ruleId);
        assert.equal(res.body.errcode, 'M_INVALID_PARAM');
      }
      const del = await alice.delete(`${G}/override/.m.rule.master`);
      assert.equal(del.status, 400);
      assert.equal(del.body.errcode, 'M_INVALID_PARAM');
      assert.deepEqual(ids((await ruleset()).override), DEFAULT_OVERRIDE);
    });

    it('orders user-defined rules with before and after, below .m.rule.master', async () => {
      const put = (id: string, query = ''): Promise<unknown> =>
        alice.put(`${G}/override/${id}${query}`, {
          actions: ['notify'],
          conditions: [{ kind: 'event_match', key: 'content.body', pattern: id }],
        });
      await put('a');
      await put('b'); // new rules without a position become the most important user rule
      await put('c', '?after=a');
      await put('d', '?before=b');
      await put('e', '?before=c&after=d'); // before wins
      assert.deepEqual(ids((await ruleset()).override), [
        '.m.rule.master',
        'd',
        'b',
        'a',
        'e',
        'c',
        ...DEFAULT_OVERRIDE.slice(1),
      ]);

      // Updating keeps the position and the enabled flag, and replaces conditions and actions.
      assert.equal((await alice.put(`${G}/override/a/enabled`, { enabled: false })).status, 200);
      await alice.put(`${G}/override/a`, { actions: [], conditions: [] });
      assert.deepEqual((await alice.get(`${G}/override/a`)).body, {
        rule_id: 'a',
        default: false,
        enabled: false,
        actions: [],
        conditions: [],
      });
      assert.deepEqual(ids((await ruleset()).override).slice(0, 6), [
        '.m.rule.master',
        'd',
        'b',
        'a',
        'e',
        'c',
      ]);

      const notFound = await alice.put(`${G}/override/f?before=nosuchrule`, { actions: [], conditions: [] });
      assert.equal(notFound.status, 400);
      assert.equal(notFound.body.errcode, 'M_UNKNOWN');
      const relativeToDefault = await alice.put(`${G}/override/f?after=.m.rule.master`, {
        actions: [],
        conditions: [],
      });
      assert.equal(relativeToDefault.status, 400);
      assert.equal(relativeToDefault.body.errcode, 'M_INVALID_PARAM');
      assert.equal((await alice.get(`${G}/override/f`)).status, 404);

      for (const id of ['a', 'b', 'c', 'd', 'e'])
        assert.equal((await alice.delete(`${G}/override/${id}`)).status, 200);
      assert.deepEqual(ids((await ruleset()).override), DEFAULT_OVERRIDE);
    });

    it('places user underride rules above the server-default underride rules', async () => {
      await alice.put(`${G}/underride/mine`, { actions: ['notify'], conditions: [] });
      assert.deepEqual(ids((await ruleset()).underride), ['mine', ...DEFAULT_UNDERRIDE]);
      await alice.delete(`${G}/underride/mine`);
    });

    it('stores room rules without conditions', async () => {
      const roomId = '!room:test.local';
      assert.equal((await alice.put(`${G}/room/${encodeURIComponent(roomId)}`, { actions: [] })).status, 200);
      assert.deepEqual((await ruleset()).room, [
        { rule_id: roomId, default: false, enabled: true, actions: [] },
      ]);
    });

    it('deletes user-defined rules', async () => {
      await alice.put(`${G}/content/temp`, { pattern: 'temp', actions: ['notify'] });
      assert.equal((await alice.delete(`${G}/content/temp`)).status, 200);
      for (const res of [await alice.get(`${G}/content/temp`), await alice.delete(`${G}/content/temp`)]) {
        assert.equal(res.status, 404);
        assert.equal(res.body.errcode, 'M_NOT_FOUND');
      }
    });

    it('enables and disables any rule, server defaults included', async () => {
      assert.deepEqual((await alice.get(`${G}/override/.m.rule.master/enabled`)).body, { enabled: false });
      assert.equal((await alice.put(`${G}/override/.m.rule.master/enabled`, { enabled: true })).status, 200);
      assert.deepEqual((await alice.get(`${G}/override/.m.rule.master/enabled`)).body, { enabled: true });
      assert.equal((await ruleset()).override[0]?.enabled, true);
      assert.equal((await ruleset(bob)).override[0]?.enabled, false);
      await alice.put(`${G}/override/.m.rule.master/enabled`, { enabled: false });

      const missing = await alice.put(`${G}/override/.m.rule.master/enabled`, {});
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
      const wrong = await alice.put(`${G}/override/.m.rule.master/enabled`, { enabled: 'yes' });
      assert.equal(wrong.status, 400);
      assert.equal(wrong.body.errcode, 'M_BAD_JSON');
      const unknown = await alice.put(`${G}/override/nosuchrule/enabled`, { enabled: true });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
    });

    it('changes the actions of any rule, server defaults included', async () => {
      const actions = ['notify', { set_tweak: 'sound', value: 'bing' }];
      assert.equal((await alice.put(`${G}/underride/.m.rule.message/actions`, { actions })).status, 200);
      assert.deepEqual((await alice.get(`${G}/underride/.m.rule.message/actions`)).body, { actions });
      const rule = (await ruleset()).underride.find((r) => r.rule_id === '.m.rule.message');
      assert.deepEqual(rule, {
        rule_id: '.m.rule.message',
        default: true,
        enabled: true,
        conditions: [{ kind: 'event_match', key: 'type', pattern: 'm.room.message' }],
        actions,
      });

      const missing = await alice.put(`${G}/underride/.m.rule.message/actions`, {});
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
      const unknown = await alice.put(`${G}/underride/nosuchrule/actions`, { actions: [] });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
      const unknownGet = await alice.get(`${G}/underride/nosuchrule/actions`);
      assert.equal(unknownGet.status, 404);
      assert.equal(unknownGet.body.errcode, 'M_NOT_FOUND');
    });

    it('keeps the ruleset in m.push_rules account data', async () => {
      const res = await alice.get(`/_matrix/client/v3/user/${alice.userId}/account_data/m.push_rules`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { global: await ruleset() });
      const row = await server.hs.storage.db
        .selectFrom('account_data')
        .select(['content', 'stream_pos'])
        .where('user_id', '=', alice.userId)
        .where('type', '=', 'm.push_rules')
        .executeTakeFirstOrThrow();
      assert.deepEqual(JSON.parse(row.content), res.body);
      assert.ok(row.stream_pos > 0);
    });

    it('requires a token', async () => {
      for (const res of [
        await server.client().get(`${PR}/`),
        await server.client().put(`${G}/content/x`, {}),
      ]) {
        assert.equal(res.status, 401);
        assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
      }
    });

    it('survives a restart', async () => {
      await alice.put(`${G}/content/persisted`, { pattern: 'persisted', actions: ['notify'] });
      await alice.put(`${G}/override/.m.rule.suppress_notices/enabled`, { enabled: false });
      const before = await ruleset();
      await server.stop();
      server = await startTestServer(engine, {}, { db: server.db, dataDir: server.dataDir });
      const again = server.client(alice.token);
      assert.deepEqual(await ruleset(again), before);
      assert.equal((await again.get(`${G}/override/.m.rule.suppress_notices/enabled`)).body.enabled, false);
    });
  });
}
