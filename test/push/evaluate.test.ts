/** The push rule evaluator (src/push/evaluate.ts), with the spec's examples: no database. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultPushRules, type PushRuleset } from '../../src/push/default-rules.js';
import {
  evaluatePushRules,
  globMatches,
  pushPowerLevels,
  splitPath,
  type PushContext,
} from '../../src/push/evaluate.js';

const ME = '@me:example.org';
const ROOM = '!room:example.org';
const ctx = (over: Partial<PushContext> = {}): PushContext => ({
  memberCount: 5,
  displayName: 'Alice Smith',
  senderPowerLevel: 0,
  notificationPowerLevels: { room: 50 },
  ...over,
});
const msg = (content: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  type: 'm.room.message',
  sender: '@other:example.org',
  room_id: ROOM,
  event_id: '$e',
  content,
  ...extra,
});
const rules = (): PushRuleset => defaultPushRules(ME);
const only = (kind: keyof PushRuleset, rule: PushRuleset[keyof PushRuleset][number]): PushRuleset => ({
  override: [],
  content: [],
  room: [],
  sender: [],
  underride: [],
  [kind]: [rule],
});
const cond = (c: Record<string, unknown>) =>
  only('override', {
    rule_id: 'r',
    default: false,
    enabled: true,
    actions: ['notify'],
    conditions: [c as never],
  });
const matches = (c: Record<string, unknown>, ev: Record<string, unknown>, context = ctx()) =>
  evaluatePushRules(ev, context, cond(c))?.notify === true;

describe('push rule evaluation', () => {
  it('event_match: whole-value glob, case-insensitive (spec example lunc?*)', () => {
    const topic = (t: unknown) => ({ type: 'm.room.topic', state_key: '', content: { topic: t } });
    const c = { kind: 'event_match', key: 'content.topic', pattern: 'lunc?*' };
    assert.ok(matches(c, topic('Lunch plans')));
    assert.ok(matches(c, topic('LUNCH')));
    assert.ok(!matches(c, topic(' lunch')));
    assert.ok(!matches(c, topic('lunc')));
    assert.ok(!matches(c, topic(null)));
    assert.ok(!matches({ ...c, pattern: '*' }, { type: 'm.room.topic', content: {} }));
  });

  it('event_match on content.body matches at word boundaries (spec example ex*ple)', () => {
    const c = { kind: 'event_match', key: 'content.body', pattern: 'ex*ple' };
    assert.ok(matches(c, msg({ body: 'An example event.' })));
    assert.ok(matches(c, msg({ body: 'exple' })));
    assert.ok(matches(c, msg({ body: 'An exciting triple-whammy' })));
    assert.ok(!matches(c, msg({ body: 'anexample' })));
    assert.ok(globMatches('cake', 'I like CAKE!', true));
    assert.ok(!globMatches('cake', 'cakes', true));
    assert.ok(globMatches('a.b', 'a.b'));
    assert.ok(!globMatches('a.b', 'axb'));
  });

  it('event_property_is and event_property_contains match exactly, with escaped dots', () => {
    assert.deepEqual(splitPath('content.m\\.federate'), ['content', 'm.federate']);
    assert.deepEqual(splitPath('a\\\\b.c'), ['a\\b', 'c']);
    const create = (v: unknown) => ({ type: 'm.room.create', state_key: '', content: { 'm.federate': v } });
    const is = { kind: 'event_property_is', key: 'content.m\\.federate', value: true };
    assert.ok(matches(is, create(true)));
    assert.ok(!matches(is, create('true')));
    assert.ok(!matches(is, create(1)));
    assert.ok(matches({ ...is, value: null }, create(null)));
    assert.ok(!matches({ ...is, value: null }, { type: 'm.room.create', content: {} }));
    const alias = (a: unknown) => ({ type: 'm.room.canonical_alias', content: { alt_aliases: a } });
    const has = { kind: 'event_property_contains', key: 'content.alt_aliases', value: '#myroom:example.com' };
    assert.ok(matches(has, alias(['#somewhere:example.org', '#myroom:example.com'])));
    assert.ok(!matches(has, alias([':example.com'])));
    assert.ok(!matches(has, alias('#myroom:example.com')));
  });

  it('contains_display_name, room_member_count and sender_notification_permission', () => {
    const dn = { kind: 'contains_display_name' };
    assert.ok(matches(dn, msg({ body: 'hey alice smith, lunch?' })));
    assert.ok(!matches(dn, msg({ body: 'hey alice smithers' })));
    assert.ok(!matches(dn, msg({ body: 'hey' }), ctx({ displayName: null })));
    const count = (is: string, n: number) =>
      matches({ kind: 'room_member_count', is }, msg({}), ctx({ memberCount: n }));
    assert.ok(count('2', 2) && !count('2', 3));
    assert.ok(count('==2', 2));
    assert.ok(count('<3', 2) && !count('<3', 3));
    assert.ok(count('>3', 4) && !count('>3', 3));
    assert.ok(count('<=3', 3) && !count('<=3', 4));
    assert.ok(count('>=3', 3) && !count('>=3', 2));
    assert.ok(!count('abc', 2));
    const perm = { kind: 'sender_notification_permission', key: 'room' };
    assert.ok(!matches(perm, msg({}), ctx({ senderPowerLevel: 0 })));
    assert.ok(matches(perm, msg({}), ctx({ senderPowerLevel: 50 })));
    assert.ok(matches(perm, msg({}), ctx({ senderPowerLevel: 10, notificationPowerLevels: { room: 10 } })));
    assert.deepEqual(
      pushPowerLevels({ users: { '@a:x': 100 }, users_default: 5, notifications: { room: 20 } }, '@b:x'),
      {
        senderPowerLevel: 5,
        notificationPowerLevels: { room: 20 },
      },
    );
    assert.equal(pushPowerLevels({ users: { '@a:x': 100 } }, '@a:x').senderPowerLevel, 100);
    assert.equal(pushPowerLevels(undefined, '@a:x').senderPowerLevel, 0);
    assert.ok(!matches({ kind: 'unknown_condition' }, msg({})));
  });

  it('default rules: messages notify, one-to-one rooms sound, mentions highlight, notices and edits do not', () => {
    const r = rules();
    assert.deepEqual(evaluatePushRules(msg({ body: 'hi' }), ctx(), r), {
      notify: true,
      highlight: false,
      actions: ['notify'],
      ruleId: '.m.rule.message',
    });
    const dm = evaluatePushRules(msg({ body: 'hi' }), ctx({ memberCount: 2 }), r);
    assert.equal(dm?.ruleId, '.m.rule.room_one_to_one');
    assert.equal(dm?.sound, 'default');
    const mention = evaluatePushRules(msg({ body: 'hi', 'm.mentions': { user_ids: [ME] } }), ctx(), r);
    assert.equal(mention?.highlight, true);
    assert.equal(mention?.notify, true);
    const room = msg({ body: 'all', 'm.mentions': { room: true } });
    assert.equal(evaluatePushRules(room, ctx(), r)?.highlight, false);
    assert.equal(evaluatePushRules(room, ctx({ senderPowerLevel: 50 }), r)?.highlight, true);
    assert.equal(evaluatePushRules(msg({ body: 'n', msgtype: 'm.notice' }), ctx(), r)?.notify, false);
    const edit = msg({ body: '* x', 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } });
    assert.equal(evaluatePushRules(edit, ctx(), r)?.notify, false);
    const invite = {
      type: 'm.room.member',
      state_key: ME,
      sender: '@o:x',
      content: { membership: 'invite' },
    };
    assert.equal(evaluatePushRules(invite, ctx(), r)?.ruleId, '.m.rule.invite_for_me');
    const member = { ...invite, state_key: '@o:x', content: { membership: 'join' } };
    assert.equal(evaluatePushRules(member, ctx(), r)?.notify, false);
    assert.equal(
      evaluatePushRules({ type: 'm.room.topic', state_key: '', content: {} }, ctx(), r),
      undefined,
    );
    const call = evaluatePushRules({ type: 'm.call.invite', content: {} }, ctx(), r);
    assert.equal(call?.sound, 'ring');
  });

  it('the master rule, content, room and sender rules, in kind order; disabled rules are skipped', () => {
    const r = rules();
    r.override[0]!.enabled = true;
    assert.equal(evaluatePushRules(msg({ body: 'hi' }), ctx(), r)?.notify, false);
    const r2 = rules();
    r2.content.push({
      rule_id: 'cake',
      default: false,
      enabled: true,
      pattern: 'cake*',
      actions: ['notify', { set_tweak: 'highlight' }],
    });
    r2.room.push({ rule_id: ROOM, default: false, enabled: true, actions: [] });
    assert.equal(evaluatePushRules(msg({ body: 'I like cakes' }), ctx(), r2)?.ruleId, 'cake');
    assert.equal(evaluatePushRules(msg({ body: 'I like cakes' }), ctx(), r2)?.highlight, true);
    assert.equal(evaluatePushRules(msg({ body: 'hello' }), ctx(), r2)?.ruleId, ROOM);
    assert.equal(evaluatePushRules(msg({ body: 'hello' }), ctx(), r2)?.notify, false);
    r2.room[0]!.enabled = false;
    r2.sender.push({
      rule_id: '@other:example.org',
      default: false,
      enabled: true,
      actions: ['notify', { set_tweak: 'sound', value: 'x' }],
    });
    assert.equal(evaluatePushRules(msg({ body: 'hello' }), ctx(), r2)?.sound, 'x');
    const hl = only('override', {
      rule_id: 'h',
      default: false,
      enabled: true,
      conditions: [],
      actions: ['notify', { set_tweak: 'highlight', value: false }],
    });
    assert.equal(evaluatePushRules(msg({}), ctx(), hl)?.highlight, false);
  });
});
