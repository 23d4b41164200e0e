/**
 * Push rules (client-server API "Push Rules: API"). The user's ruleset is kept as the content of their
 * m.push_rules account data, so it survives restarts and reaches clients through /sync; server-default rules
 * are layered in on every read (src/push/default-rules.ts).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  MASTER_RULE_ID,
  PUSH_RULE_KINDS,
  isServerDefaultRuleId,
  type PushAction,
  type PushRule,
  type PushRuleKind,
  type PushRuleset,
} from '../../push/default-rules.js';
import { loadPushRules, PUSH_RULES_TYPE } from '../../push/rules-store.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError, invalidParam, missingParam, notFound } from '../errors.js';
import { parseBody, parseParams, parseQuery } from '../validate.js';
import { GLOBAL_ROOM, writeAccountData } from './account-data.js';

const RuleParams = z.object({
  kind: z.enum(PUSH_RULE_KINDS as [PushRuleKind, ...PushRuleKind[]]),
  ruleId: z.string().min(1),
});
const Position = z.looseObject({ before: z.string().min(1).optional(), after: z.string().min(1).optional() });

/** dont_notify and coalesce are historical: accepted and stripped, as the spec asks. */
const HISTORICAL_ACTIONS = new Set(['dont_notify', 'coalesce']);
const Actions = z
  .array(z.union([z.enum(['notify', 'dont_notify', 'coalesce']), z.looseObject({ set_tweak: z.string() })]))
  .transform((actions): PushAction[] =>
    actions.filter((a) => typeof a !== 'string' || !HISTORICAL_ACTIONS.has(a)),
  );
const Condition = z.looseObject({
  kind: z.string(),
  key: z.string().optional(),
  pattern: z.string().optional(),
  is: z.string().optional(),
  value: z.union([z.string(), z.int(), z.boolean(), z.null()]).optional(),
});
const RuleBody = z.looseObject({
  actions: Actions,
  conditions: z.array(Condition).optional(),
  pattern: z.string().optional(),
});
const EnabledBody = z.looseObject({ enabled: z.boolean() });
const ActionsBody = z.looseObject({ actions: Actions });

function findRule(rules: PushRuleset, kind: PushRuleKind, ruleId: string): PushRule {
  const found = rules[kind].find((r) => r.rule_id === ruleId);
  if (!found) throw notFound('The push rule was not found');
  return found;
}

/** The rule a PUT creates or replaces, in the shape its kind has. */
function ruleFromBody(
  kind: PushRuleKind,
  ruleId: string,
  body: z.output<typeof RuleBody>,
  enabled: boolean,
): PushRule {
  const out: PushRule = { rule_id: ruleId, default: false, enabled, actions: body.actions };
  if (kind === 'override' || kind === 'underride') out.conditions = body.conditions ?? [];
  if (kind === 'content') {
    if (body.pattern === undefined)
      throw missingParam('Missing parameter: pattern (required for content rules)');
    out.pattern = body.pattern;
  }
  return out;
}

/** Where in `list` (which no longer holds the rule) the new or updated rule goes. */
function insertionIndex(list: PushRule[], pos: z.output<typeof Position>, previous: number): number {
  const anchor = pos.before ?? pos.after;
  if (anchor !== undefined) {
    if (isServerDefaultRuleId(anchor))
      throw invalidParam('Cannot add a rule relative to a server-default rule');
    const i = list.findIndex((r) => r.rule_id === anchor);
    if (i < 0) throw new MatrixError('M_UNKNOWN', `before/after rule not found: ${anchor}`, {}, 400);
    return pos.before !== undefined ? i : i + 1;
  }
  if (previous >= 0) return previous;
  // The most important user-defined rule of its kind: only .m.rule.master ranks above it.
  const i = list.findIndex((r) => r.rule_id !== MASTER_RULE_ID);
  return i < 0 ? list.length : i;
}

function checkUserRuleId(ruleId: string): void {
  if (isServerDefaultRuleId(ruleId)) {
    throw invalidParam('Rule IDs starting with "." are reserved for server rules');
  }
  if (ruleId.includes('/') || ruleId.includes('\\')) throw invalidParam('Rule IDs cannot contain / or \\');
}

export function pushRulesRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'storage' | 'auth' | 'notifier'>,
): void {
  const guard = { preHandler: deps.auth.requireUser };
  const { storage } = deps;
  const base = '/_matrix/client/v3/pushrules/global/:kind/:ruleId';

  // Edits are read-modify-write of one account data row: serialise them per user.
  const tails = new Map<string, Promise<unknown>>();
  function edit(userId: string, change: (rules: PushRuleset) => void): Promise<void> {
    const run = (tails.get(userId) ?? Promise.resolve()).then(async () => {
      const rules = await loadPushRules(storage, userId);
      change(rules);
      await writeAccountData(deps, userId, GLOBAL_ROOM, PUSH_RULES_TYPE, { global: rules });
    });
    const tail = run.catch(() => undefined);
    tails.set(userId, tail);
    void tail.then(() => tails.get(userId) === tail && tails.delete(userId));
    return run;
  }

  const ruleOf = async (req: FastifyRequest): Promise<PushRule> => {
    const { kind, ruleId } = parseParams(RuleParams, req.params);
    return findRule(await loadPushRules(storage, requester(req).userId), kind, ruleId);
  };

  /** GET /_matrix/client/v3/pushrules/ */
  app.get('/_matrix/client/v3/pushrules/', guard, async (req) => ({
    global: await loadPushRules(storage, requester(req).userId),
  }));

  /** GET /_matrix/client/v3/pushrules/global/ */
  app.get('/_matrix/client/v3/pushrules/global/', guard, async (req) =>
    loadPushRules(storage, requester(req).userId),
  );

  /** GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
  app.get(base, guard, async (req) => ruleOf(req));

  /** PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
  app.put(base, guard, async (req) => {
    const { kind, ruleId } = parseParams(RuleParams, req.params);
    checkUserRuleId(ruleId);
    const pos = parseQuery(Position, req.query);
    const body = parseBody(RuleBody, req.body);
    await edit(requester(req).userId, (rules) => {
      const list = rules[kind];
      const previous = list.findIndex((r) => r.rule_id === ruleId);
      const enabled = previous >= 0 ? (list[previous]?.enabled ?? true) : true;
      const rule = ruleFromBody(kind, ruleId, body, enabled);
      if (previous >= 0) list.splice(previous, 1);
      list.splice(insertionIndex(list, pos, previous), 0, rule);
    });
    return {};
  });

  /** DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
  app.delete(base, guard, async (req) => {
    const { kind, ruleId } = parseParams(RuleParams, req.params);
    if (isServerDefaultRuleId(ruleId)) throw invalidParam('Server-default rules cannot be deleted');
    await edit(requester(req).userId, (rules) => {
      rules[kind].splice(rules[kind].indexOf(findRule(rules, kind, ruleId)), 1);
    });
    return {};
  });

  /** GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled */
  app.get(`${base}/enabled`, guard, async (req) => ({ enabled: (await ruleOf(req)).enabled }));

  /** PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled */
  app.put(`${base}/enabled`, guard, async (req) => {
    const { kind, ruleId } = parseParams(RuleParams, req.params);
    const { enabled } = parseBody(EnabledBody, req.body);
    await edit(requester(req).userId, (rules) => {
      findRule(rules, kind, ruleId).enabled = enabled;
    });
    return {};
  });

  /** GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions */
  app.get(`${base}/actions`, guard, async (req) => ({ actions: (await ruleOf(req)).actions }));

  /** PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions */
  app.put(`${base}/actions`, guard, async (req) => {
    const { kind, ruleId } = parseParams(RuleParams, req.params);
    const { actions } = parseBody(ActionsBody, req.body);
    await edit(requester(req).userId, (rules) => {
      findRule(rules, kind, ruleId).actions = actions;
    });
    return {};
  });
}
