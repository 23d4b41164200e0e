/**
 * The simplified sliding sync request (MSC4186), in both shapes clients send, turned into one internal form:
 * - `unstable` (`/unstable/org.matrix.simplified_msc3575/sync`, Synapse's experimental API, what Element X and
 *   matrix-js-sdk send): `pos`/`timeout`/`set_presence` as query parameters, `ranges`, `required_state` as
 *   `[type, state_key]` pairs with `*`, `$ME` and `$LAZY`, filter `is_invite`;
 * - `v4` (`/v4/sync`, the merged proposal): everything in the body, one optional `range`, `required_state` as
 *   `{include, exclude, lazy_members}`, filter `is_invited`.
 */
import { z } from 'zod';
import { MatrixError } from '../../api/errors.js';
import { parseBody, parseQuery } from '../../util/validate.js';

export type Flavour = 'unstable' | 'v4';

/** Matches state by type and state key; an absent field matches anything. */
export interface StateElement {
  type?: string;
  stateKey?: string;
}

export interface RequiredState {
  include: StateElement[];
  exclude: StateElement[];
  /** Lazy-loaded members: memberships of timeline senders and targets (not matched by wildcard includes). */
  lazy: boolean;
}

export interface RoomConfig {
  timelineLimit: number;
  requiredState: RequiredState;
}

export interface ListFilters {
  isDm?: boolean | undefined;
  isEncrypted?: boolean | undefined;
  isInvite?: boolean | undefined;
  roomTypes?: (string | null)[] | undefined;
  notRoomTypes?: (string | null)[] | undefined;
  spaces?: string[] | undefined;
  tags?: string[] | undefined;
  notTags?: string[] | undefined;
}

export interface ListConfig extends RoomConfig {
  /** Inclusive index ranges into the filtered list; null: the whole list. */
  ranges: [number, number][] | null;
  filters: ListFilters;
}

export interface SlidingRequest {
  flavour: Flavour;
  connId: string;
  pos: string | undefined;
  timeoutMs: number;
  setPresence: 'online' | 'offline' | 'unavailable';
  lists: Map<string, ListConfig>;
  subscriptions: Map<string, RoomConfig>;
  extensions: unknown;
}

export const MAX_LISTS = 100;
export const MAX_SUBSCRIPTIONS = 100;
export const MAX_TIMELINE_LIMIT = 1000;
const MAX_TIMEOUT_MS = 10 * 60_000;

const int = z.number().int().min(0);
const limit = int.transform((n) => Math.min(n, MAX_TIMELINE_LIMIT));
const presence = z.enum(['online', 'offline', 'unavailable']);
const strings = z.array(z.string()).nullish();
const roomTypes = z.array(z.string().nullable()).nullish();
const range = z.tuple([int, int]).refine(([a, b]) => a <= b, 'range start is after its end');

const filterFields = {
  is_dm: z.boolean().nullish(),
  is_encrypted: z.boolean().nullish(),
  room_types: roomTypes,
  not_room_types: roomTypes,
  spaces: strings,
  tags: strings,
  not_tags: strings,
};

const UnstableList = z.looseObject({
  ranges: z.array(range).nullish(),
  timeline_limit: limit,
  required_state: z.array(z.tuple([z.string(), z.string()])),
  filters: z.looseObject({ ...filterFields, is_invite: z.boolean().nullish() }).nullish(),
});
const UnstableSub = z.looseObject({
  timeline_limit: limit,
  required_state: z.array(z.tuple([z.string(), z.string()])),
});
const UnstableBody = z.looseObject({
  conn_id: z.string().max(255).nullish(),
  lists: z.record(z.string(), UnstableList).nullish(),
  room_subscriptions: z.record(z.string(), UnstableSub).nullish(),
  extensions: z.unknown().optional(),
});
const UnstableQuery = z.looseObject({
  pos: z.string().optional(),
  timeout: z.coerce.number().int().min(0).optional(),
  set_presence: presence.optional(),
});

const Element = z.looseObject({ type: z.string().nullish(), state_key: z.string().nullish() });
const V4RequiredState = z.looseObject({
  include: z.array(Element).nullish(),
  exclude: z.array(Element).nullish(),
  lazy_members: z.boolean().nullish(),
});
const V4Sub = z.looseObject({ timeline_limit: limit, required_state: V4RequiredState });
const V4List = z.looseObject({
  range: range.nullish(),
  timeline_limit: limit,
  required_state: V4RequiredState,
  filters: z.looseObject({ ...filterFields, is_invited: z.boolean().nullish() }).nullish(),
});
const V4Body = z.looseObject({
  conn_id: z.string().max(255).nullish(),
  pos: z.string().nullish(),
  timeout: int.nullish(),
  set_presence: presence.nullish(),
  lists: z.record(z.string(), V4List).nullish(),
  room_subscriptions: z.record(z.string(), V4Sub).nullish(),
  extensions: z.unknown().optional(),
});

/** `[type, state_key]` pairs: `*` is a wildcard, `$ME` the user, `m.room.member`/`$LAZY` lazy members. */
function unstableState(pairs: [string, string][], userId: string): RequiredState {
  const include: StateElement[] = [];
  let lazy = false;
  let allMembers = false;
  for (const [type, key] of pairs) {
    if (type === 'm.room.member' && key === '$LAZY') {
      lazy = true;
      continue;
    }
    const el: StateElement = {};
    if (type !== '*') el.type = type;
    if (key === '$ME') el.stateKey = userId;
    else if (key !== '*') el.stateKey = key;
    if (el.stateKey === undefined && (el.type === undefined || el.type === 'm.room.member'))
      allMembers = true;
    include.push(el);
  }
  // Synapse: a wildcard that returns every membership wins over $LAZY.
  return { include, exclude: [], lazy: lazy && !allMembers };
}

function v4State(rs: z.infer<typeof V4RequiredState>): RequiredState {
  const el = (e: z.infer<typeof Element>): StateElement => ({
    ...(e.type != null ? { type: e.type } : {}),
    ...(e.state_key != null ? { stateKey: e.state_key } : {}),
  });
  return {
    include: (rs.include ?? []).map(el),
    exclude: (rs.exclude ?? []).map(el),
    lazy: rs.lazy_members === true,
  };
}

function filters(
  f: {
    is_dm?: boolean | null | undefined;
    is_encrypted?: boolean | null | undefined;
    room_types?: (string | null)[] | null | undefined;
    not_room_types?: (string | null)[] | null | undefined;
    spaces?: string[] | null | undefined;
    tags?: string[] | null | undefined;
    not_tags?: string[] | null | undefined;
  },
  isInvite: boolean | null | undefined,
): ListFilters {
  return {
    isDm: f.is_dm ?? undefined,
    isEncrypted: f.is_encrypted ?? undefined,
    isInvite: isInvite ?? undefined,
    roomTypes: f.room_types ?? undefined,
    notRoomTypes: f.not_room_types ?? undefined,
    spaces: f.spaces ?? undefined,
    tags: f.tags ?? undefined,
    notTags: f.not_tags ?? undefined,
  };
}

function checkSizes(lists: number, subs: number): void {
  if (lists > MAX_LISTS) throw new MatrixError('M_INVALID_PARAM', `At most ${MAX_LISTS} lists`);
  if (subs > MAX_SUBSCRIPTIONS)
    throw new MatrixError('M_INVALID_PARAM', `At most ${MAX_SUBSCRIPTIONS} room subscriptions`);
}

export function parseUnstable(body: unknown, query: unknown, userId: string): SlidingRequest {
  const b = parseBody(UnstableBody, body);
  const q = parseQuery(UnstableQuery, query);
  const lists = Object.entries(b.lists ?? {});
  const subs = Object.entries(b.room_subscriptions ?? {});
  checkSizes(lists.length, subs.length);
  return {
    flavour: 'unstable',
    connId: b.conn_id ?? '',
    pos: q.pos === '' ? undefined : q.pos,
    timeoutMs: Math.min(q.timeout ?? 0, MAX_TIMEOUT_MS),
    setPresence: q.set_presence ?? 'online',
    lists: new Map(
      lists.map(([name, l]) => [
        name,
        {
          timelineLimit: l.timeline_limit,
          requiredState: unstableState(l.required_state, userId),
          ranges: l.ranges ?? null,
          filters: filters(l.filters ?? {}, l.filters?.is_invite),
        },
      ]),
    ),
    subscriptions: new Map(
      subs.map(([roomId, s]) => [
        roomId,
        { timelineLimit: s.timeline_limit, requiredState: unstableState(s.required_state, userId) },
      ]),
    ),
    extensions: b.extensions,
  };
}

export function parseV4(body: unknown): SlidingRequest {
  const b = parseBody(V4Body, body);
  const lists = Object.entries(b.lists ?? {});
  const subs = Object.entries(b.room_subscriptions ?? {});
  checkSizes(lists.length, subs.length);
  return {
    flavour: 'v4',
    connId: b.conn_id ?? '',
    pos: b.pos == null || b.pos === '' ? undefined : b.pos,
    timeoutMs: Math.min(b.timeout ?? 0, MAX_TIMEOUT_MS),
    setPresence: b.set_presence ?? 'online',
    lists: new Map(
      lists.map(([name, l]) => [
        name,
        {
          timelineLimit: l.timeline_limit,
          requiredState: v4State(l.required_state),
          ranges: l.range ? [l.range] : null,
          filters: filters(l.filters ?? {}, l.filters?.is_invited),
        },
      ]),
    ),
    subscriptions: new Map(
      subs.map(([roomId, s]) => [
        roomId,
        { timelineLimit: s.timeline_limit, requiredState: v4State(s.required_state) },
      ]),
    ),
    extensions: b.extensions,
  };
}
