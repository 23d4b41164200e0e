/**
 * Push rules: the spec's server-default rules ("Predefined Rules" of the push module, Matrix v1.19) and how a
 * user's stored rules are layered over them.
 *
 * The legacy body-matching rules (.m.rule.contains_display_name, .m.rule.contains_user_name, .m.rule.roomnotif)
 * were removed from the spec in v1.17, and the spec defines no poll rules, so neither is served.
 */
import { z } from 'zod';

export type PushRuleKind = 'override' | 'content' | 'room' | 'sender' | 'underride';

/** In the order they are evaluated. */
export const PUSH_RULE_KINDS: readonly PushRuleKind[] = [
  'override',
  'content',
  'room',
  'sender',
  'underride',
];

export type PushAction = string | { set_tweak: string; value?: unknown; [key: string]: unknown };

export interface PushCondition {
  kind: string;
  [key: string]: unknown;
}

export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

export type PushRuleset = Record<PushRuleKind, PushRule[]>;

export const MASTER_RULE_ID = '.m.rule.master';

/** Server-default rule ids start with a dot; users cannot create or delete them. */
export function isServerDefaultRuleId(ruleId: string): boolean {
  return ruleId.startsWith('.');
}

const eventMatch = (key: string, pattern: string): PushCondition => ({ kind: 'event_match', key, pattern });
const notifySound = (sound: string): PushAction[] => ['notify', { set_tweak: 'sound', value: sound }];
const rule = (
  rule_id: string,
  conditions: PushCondition[],
  actions: PushAction[],
  enabled = true,
): PushRule => ({ rule_id, default: true, enabled, conditions, actions });

/** The server-default rules for `userId`, in priority order within each kind. */
export function defaultPushRules(userId: string): PushRuleset {
  return {
    override: [
      rule(MASTER_RULE_ID, [], [], false),
      rule('.m.rule.suppress_notices', [eventMatch('content.msgtype', 'm.notice')], []),
      rule(
        '.m.rule.invite_for_me',
        [
          eventMatch('type', 'm.room.member'),
          eventMatch('content.membership', 'invite'),
          eventMatch('state_key', userId),
        ],
        notifySound('default'),
      ),
      rule('.m.rule.member_event', [eventMatch('type', 'm.room.member')], []),
      rule(
        '.m.rule.is_user_mention',
        [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: userId }],
        [...notifySound('default'), { set_tweak: 'highlight' }],
      ),
      rule(
        '.m.rule.is_room_mention',
        [
          { kind: 'event_property_is', key: 'content.m\\.mentions.room', value: true },
          { kind: 'sender_notification_permission', key: 'room' },
        ],
        ['notify', { set_tweak: 'highlight' }],
      ),
      rule(
        '.m.rule.tombstone',
        [eventMatch('type', 'm.room.tombstone'), eventMatch('state_key', '')],
        ['notify', { set_tweak: 'highlight' }],
      ),
      rule('.m.rule.reaction', [eventMatch('type', 'm.reaction')], []),
      rule(
        '.m.rule.room.server_acl',
        [eventMatch('type', 'm.room.server_acl'), eventMatch('state_key', '')],
        [],
      ),
      rule(
        '.m.rule.suppress_edits',
        [{ kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' }],
        [],
      ),
    ],
    content: [],
    room: [],
    sender: [],
    underride: [
      rule('.m.rule.call', [eventMatch('type', 'm.call.invite')], notifySound('ring')),
      rule(
        '.m.rule.encrypted_room_one_to_one',
        [{ kind: 'room_member_count', is: '2' }, eventMatch('type', 'm.room.encrypted')],
        notifySound('default'),
      ),
      rule(
        '.m.rule.room_one_to_one',
        [{ kind: 'room_member_count', is: '2' }, eventMatch('type', 'm.room.message')],
        notifySound('default'),
      ),
      rule('.m.rule.message', [eventMatch('type', 'm.room.message')], ['notify']),
      rule('.m.rule.encrypted', [eventMatch('type', 'm.room.encrypted')], ['notify']),
    ],
  };
}

const StoredRule = z.looseObject({
  rule_id: z.string().min(1),
  enabled: z.boolean(),
  actions: z.array(z.union([z.string(), z.looseObject({ set_tweak: z.string() })])),
  conditions: z.array(z.looseObject({ kind: z.string() })).optional(),
  pattern: z.string().optional(),
});

const StoredRuleset = z.looseObject({ global: z.looseObject({}) });
const StoredRules = z.array(StoredRule);

function storedRules(stored: unknown, kind: PushRuleKind): PushRule[] {
  const global = StoredRuleset.safeParse(stored);
  if (!global.success) return [];
  const list = StoredRules.safeParse(global.data.global[kind]);
  if (!list.success) return [];
  return list.data.map((r) => {
    const out: PushRule = { rule_id: r.rule_id, default: false, enabled: r.enabled, actions: r.actions };
    if (r.conditions) out.conditions = r.conditions;
    if (r.pattern !== undefined) out.pattern = r.pattern;
    return out;
  });
}

/**
 * The user's complete ruleset: `stored` is the content of their m.push_rules account data (`{ global: ... }`, as
 * last written by the push rules API) or undefined. User-defined rules come from it in their stored order;
 * server-default rules always come from {@link defaultPushRules}, so that changes to the defaults reach every
 * user, with only their `enabled` and `actions` taken from the stored copy. User-defined rules rank above the
 * server defaults of their kind, except `.m.rule.master`, which always ranks first.
 */
export function effectivePushRules(stored: unknown, userId: string): PushRuleset {
  const defaults = defaultPushRules(userId);
  const out = {} as PushRuleset;
  for (const kind of PUSH_RULE_KINDS) {
    const saved = storedRules(stored, kind);
    const user = saved.filter((r) => !isServerDefaultRuleId(r.rule_id));
    const defs = defaults[kind].map((d) => {
      const s = saved.find((r) => r.rule_id === d.rule_id);
      return s ? { ...d, enabled: s.enabled, actions: s.actions } : d;
    });
    const master = defs.filter((d) => d.rule_id === MASTER_RULE_ID);
    out[kind] = [...master, ...user, ...defs.filter((d) => d.rule_id !== MASTER_RULE_ID)];
  }
  return out;
}
