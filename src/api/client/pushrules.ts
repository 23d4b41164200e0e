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
import { MatrixError, invalidParam, missingParam, notFound, unrecognized } from '../errors.js';
import { parseBody, parseQuery } from '../validate.js';
import { GLOBAL_ROOM, writeAccountData } from './account-data.js';

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

/** Synapse's answer to a push rule path it cannot parse: 400 M_UNRECOGNIZED (UnrecognizedRequestError). */
const badPath = (message = 'Unrecognized request'): MatrixError => unrecognized(message, 400);
const TRAILING_SLASH = 'Unrecognised request: You probably wanted a trailing slash';

/**
 * The path after `/pushrules/`, split on `/` before percent-decoding (a rule id may hold an encoded slash), so
 * `pushrules/global/` is `['global', '']`. Fastify ignores trailing slashes in routing; Synapse, and SyTest,
 * tell `global` from `global/`, so the raw URL is read.
 */
function pathSegments(req: FastifyRequest): string[] {
  const path = req.url.split('?')[0] ?? '';
  const at = path.indexOf('/pushrules/');
  if (at < 0) throw unrecognized('Unrecognized request');
  return path
    .slice(at + '/pushrules/'.length)
    .split('/')
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        throw badPath('Invalid percent-encoding in the push rule path');
      }
    });
}

function kindOf(segment: string | undefined): PushRuleKind {
  const kind = PUSH_RULE_KINDS.find((k) => k === segment);
  if (!kind) throw badPath(`Unknown push rule kind: ${segment ?? ''}`);
  return kind;
}

/** `global/{kind}/{ruleId}[/{attr}]` of a PUT or DELETE (Synapse's _rule_spec_from_path). */
function ruleSpec(req: FastifyRequest): { kind: PushRuleKind; ruleId: string; attr: string | undefined } {
  const [scope, kindSegment, ruleId, attr] = pathSegments(req);
  if (scope !== 'global') throw badPath('Push rules are only supported in the global scope');
  if (kindSegment === undefined) throw badPath('Missing push rule kind');
  const kind = kindOf(kindSegment);
  if (ruleId === undefined || ruleId === '') throw badPath('Missing rule id');
  return { kind, ruleId, attr: attr === '' ? undefined : attr };
}

/** What GET answers for the path below `global/` (Synapse's _filter_ruleset_with_path). */
function selectFromRuleset(rules: PushRuleset, path: string[]): unknown {
  const [kindSegment, ruleId, attr] = path;
  if (kindSegment === undefined) throw badPath(TRAILING_SLASH);
  if (kindSegment === '') return rules;
  const kind = kindOf(kindSegment);
  if (ruleId === undefined) throw badPath(TRAILING_SLASH);
  if (ruleId === '') return rules[kind];
  const rule = findRule(rules, kind, ruleId);
  if (attr === undefined) return rule;
  if (!Object.hasOwn(rule, attr)) throw badPath(`Unknown push rule attribute: ${attr}`);
  return { [attr]: (rule as unknown as Record<string, unknown>)[attr] };
}

export function pushRulesRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'storage' | 'auth' | 'notifier'>,
): void {
  const guard = { preHandler: deps.auth.requireUser };
  const { storage } = deps;
  // The path is parsed here, as Synapse does, so that malformed paths (no scope, another scope, an unknown kind, a
  // missing rule id or an unknown attribute) answer 400 M_UNRECOGNIZED, not 404. With ignoreTrailingSlash,
  // `pushrules/` reaches only the route without the wildcard.
  const paths = ['/_matrix/client/v3/pushrules', '/_matrix/client/v3/pushrules/*'];

  // Edits are read-modify-write of one account data row: serialise them per user.
  const tails = new Map<string, Promise<unknown>>();
  function edit(userId: string, change: (rules: PushRuleset) => void): Promise<void> {
    const run = (tails.get(userId) ?? Promise.resolve()).then(async () => {
      const rules = structuredClone(await loadPushRules(storage, userId));
      change(rules);
      await writeAccountData(deps, userId, GLOBAL_ROOM, PUSH_RULES_TYPE, { global: rules });
    });
    const tail = run.catch(() => undefined);
    tails.set(userId, tail);
    void tail.then(() => tails.get(userId) === tail && tails.delete(userId));
    return run;
  }

  /**
   * GET /_matrix/client/v3/pushrules/, .../global/, .../global/{kind}/, .../global/{kind}/{ruleId} and
   * .../global/{kind}/{ruleId}/{enabled|actions|...}
   */
  const get = async (req: FastifyRequest): Promise<unknown> => {
    const [scope, ...rest] = pathSegments(req);
    const rules = await loadPushRules(storage, requester(req).userId);
    if (scope === '') return { global: rules };
    if (scope === 'global') return selectFromRuleset(rules, rest);
    throw badPath('Push rules are only supported in the global scope');
  };

  /** PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}[/enabled|/actions] */
  const put = async (req: FastifyRequest): Promise<Record<string, never>> => {
    const { kind, ruleId, attr } = ruleSpec(req);
    const userId = requester(req).userId;
    if (attr === 'enabled') {
      const { enabled } = parseBody(EnabledBody, req.body);
      await edit(userId, (rules) => {
        findRule(rules, kind, ruleId).enabled = enabled;
      });
      return {};
    }
    if (attr === 'actions') {
      const { actions } = parseBody(ActionsBody, req.body);
      await edit(userId, (rules) => {
        findRule(rules, kind, ruleId).actions = actions;
      });
      return {};
    }
    if (attr !== undefined) throw badPath(`Unknown push rule attribute: ${attr}`);
    checkUserRuleId(ruleId);
    const pos = parseQuery(Position, req.query);
    const body = parseBody(RuleBody, req.body);
    await edit(userId, (rules) => {
      const list = rules[kind];
      const previous = list.findIndex((r) => r.rule_id === ruleId);
      const enabled = previous >= 0 ? (list[previous]?.enabled ?? true) : true;
      const rule = ruleFromBody(kind, ruleId, body, enabled);
      if (previous >= 0) list.splice(previous, 1);
      list.splice(insertionIndex(list, pos, previous), 0, rule);
    });
    return {};
  };

  /** DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
  const del = async (req: FastifyRequest): Promise<Record<string, never>> => {
    const { kind, ruleId, attr } = ruleSpec(req);
    if (attr !== undefined) {
      throw new MatrixError('M_UNRECOGNIZED', 'Method DELETE is not allowed on this endpoint', {}, 405);
    }
    if (isServerDefaultRuleId(ruleId)) throw invalidParam('Server-default rules cannot be deleted');
    await edit(requester(req).userId, (rules) => {
      rules[kind].splice(rules[kind].indexOf(findRule(rules, kind, ruleId)), 1);
    });
    return {};
  };

  for (const path of paths) {
    app.get(path, guard, get);
    app.put(path, guard, put);
    app.delete(path, guard, del);
  }
}
