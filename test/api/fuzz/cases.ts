/**
 * The fuzz cases of one operation: malformed and non-object JSON, invalid UTF-8, wrong types and missing required
 * fields, huge and deeply nested values, lone surrogates and NUL in strings and keys, bad path ids and bad query
 * values, and requests without or with a bad token. Every random choice comes from one seeded PRNG, so a seed names
 * one exact list of requests.
 */
import type { JsonType, Operation } from './spec.js';

/** mulberry32: a small, fast, seedable PRNG (32-bit state). */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)] as T;
  }
  /** `n` distinct elements (all of them when the list is shorter), in random order. */
  sample<T>(list: readonly T[], n: number): T[] {
    return this.shuffle(list).slice(0, n);
  }
  shuffle<T>(list: readonly T[]): T[] {
    const out = [...list];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }
}

/** The real ids of the fixture, so that handlers get past their existence checks. */
export interface FuzzIds {
  serverName: string;
  userId: string;
  token: string;
  /** The device of `token`. */
  deviceId: string;
  /** A second device of the same user (GET/PUT /devices/{deviceId} target). */
  otherDeviceId: string;
  peerId: string;
  /** The peer's token: it sends the probe messages. */
  peerToken: string;
  roomId: string;
  roomAlias: string;
  eventId: string;
  filterId: string;
  mediaId: string;
  backupVersion: string;
}

export interface FuzzRequest {
  /** Short description of the case (shown in findings). */
  name: string;
  method: string;
  /** Raw request path with query string, exactly as written on the wire. */
  path: string;
  /** `null`: no Authorization header. */
  token: string | null;
  body?: Buffer;
  contentType?: string;
  /** A huge timeout on a long-poll endpoint: the request may legitimately still be waiting when we give up. */
  mayHang?: boolean;
}

const KB = 1024;

/** Serialises JSON; `raw` marks values spliced in verbatim (deep nesting that JSON.stringify would recurse on). */
class Raw {
  constructor(readonly text: string) {}
}

function toJson(value: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (v instanceof Raw) {
      raws.push(v.text);
      return `\u0001RAW${raws.length - 1}\u0001`;
    }
    return v;
  });
  return text.replace(/"\\u0001RAW(\d+)\\u0001"/g, (_m, i: string) => raws[Number(i)] ?? 'null');
}

const nestedArray = (depth: number): Raw => new Raw('['.repeat(depth) + ']'.repeat(depth));
const nestedObject = (depth: number): Raw => new Raw('{"a":'.repeat(depth) + '1' + '}'.repeat(depth));

const MALFORMED: readonly string[] = [
  '{',
  '{"a":1,}',
  'nope',
  '{"a":}',
  "{'a':1}",
  '{"a":1}{"b":2}',
  '{"a":1',
  '{"a":"\\x41"}',
  '{"a":"\\u12"}',
  '{"a":01}',
  '{"a":NaN}',
  '{"a":1e999}',
  '\u0000',
  ' ',
];
const NON_OBJECT: readonly string[] = ['[]', '"x"', '1', 'null', 'true', '[{}]', '-0'];
const INVALID_UTF8: readonly Buffer[] = [
  Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
  Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]),
  Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d]),
];

function wrongValues(type: JsonType): unknown[] {
  switch (type) {
    case 'string':
      return [1, true, null, {}, [], ['x'], 1.5, -1];
    case 'integer':
      return ['1', 1.5, -1, 1e300, 2 ** 53 + 2, -(2 ** 63), true, null, {}, [], 'NaN'];
    case 'number':
      return ['1', true, null, {}, [], 1e308, -1e308];
    case 'boolean':
      return ['true', 0, 1, null, {}, []];
    case 'object':
      return ['x', 1, true, null, [], [{}], { '': null }, { x: { y: [1, { z: null }] } }];
    case 'array':
      return ['x', 1, true, null, {}, [null], [1, 'x', {}], [[[]]]];
    default:
      return ['x', 1, true, null, {}, [], [null]];
  }
}

const BAD_STRINGS: readonly unknown[] = [
  '\ud800',
  '\udc00x',
  'a\u0000b',
  '\u0000',
  '\ud800\u0000\udfff',
  '\uffff',
];
const BAD_KEYS: readonly string[] = ['\u0000', '\ud800', 'a\u0000b', '\udfff', '', 'k'.repeat(70 * 1024)];

/**
 * Bad path parameter values, written on the wire verbatim (Node writes the path as latin-1, so `\xff` is a raw
 * 0xFF byte).
 */
const BAD_PATH: readonly (readonly [string, string])[] = [
  ['empty', ''],
  ['space', '%20'],
  ['NUL', '%00'],
  ['invalid percent-encoding %FF%FE', '%FF%FE'],
  ['encoded surrogate %ED%A0%80', '%ED%A0%80'],
  ['truncated escape', '%E2%82'],
  ['bad escape %zz', '%zz'],
  ['lone %', '%'],
  ['raw 0xFF byte', '\xff\xfe'],
  ['10,000 chars', 'x'.repeat(10_000)],
  ['1,001 chars', 'y'.repeat(1001)],
  ['emoji', '%F0%9F%92%A5'],
  ['right-to-left override', '%E2%80%AE%40a%3Ab'],
  ['encoded slash', 'a%2Fb'],
  ['dot-dot', '..'],
  ['encoded dot-dot', '%2E%2E'],
  ['sigil only', '!'],
  ['user sigil only', '%40'],
  ['event sigil only', '%24'],
  ['colon', '%3A'],
  ['long id with server', '!' + 'r'.repeat(300) + '%3Atest.local'],
  ['non-existent room id', '!nosuchroom%3Atest.local'],
  ['non-existent user id', '%40nosuchuser%3Atest.local'],
  ['non-existent event id', '%24nosuchevent'],
  ['remote-looking id', '!abc%3Aremote.example'],
  ['uppercase/odd chars', '%40%C3%84%3Atest.local'],
  ['JSON-looking', '%7B%22a%22%3A1%7D'],
  ['percent-encoded NUL in id', '!a%00b%3Atest.local'],
];

const BAD_INTEGERS: readonly string[] = [
  '0',
  '-0',
  '65535',
  '2147483647',
  '2147483648',
  '9007199254740991',
  '9223372036854775807',
  '-1',
  'NaN',
  '1e309',
  '99999999999999999999',
  '',
  'abc',
  '1.5',
  '-9007199254740993',
  '0x10',
  'Infinity',
  '%FF',
  '%00',
  '+1',
  '1%20',
  '9'.repeat(400),
];
const BAD_BOOLEANS: readonly string[] = ['maybe', '', '2', '%00', 'TRUE', 'null'];
const BAD_QUERY_STRINGS: readonly string[] = [
  '',
  '%FF%FE',
  '%ED%A0%80',
  '%00',
  'x'.repeat(10_000),
  '%7B',
  '%E2%80%AE',
  '%',
  's-1',
  's99999999999999999999',
  '999999999999999999999999',
  'null',
];
/** The filter of filter.yaml with every documented field. */
const FULL_FILTER = {
  event_fields: ['type', 'content', 'sender'],
  event_format: 'client',
  presence: { types: ['m.presence'], not_senders: ['@x:test.local'], limit: 5 },
  account_data: { types: ['m.*'], not_types: ['m.push_rules'], limit: 5 },
  room: {
    rooms: ['!a:test.local'],
    not_rooms: ['!b:test.local'],
    include_leave: false,
    state: { types: ['m.room.*'], lazy_load_members: true, include_redundant_members: false, limit: 10 },
    timeline: {
      limit: 10,
      types: ['m.room.message'],
      not_senders: ['@spam:test.local'],
      contains_url: false,
      'org.matrix.msc3874.rel_types': ['m.thread'],
      unread_thread_notifications: true,
    },
    ephemeral: { types: ['m.receipt', 'm.typing'], not_types: [], limit: 5 },
    account_data: { not_types: ['*'], senders: [] },
  },
};

const BAD_FILTERS: readonly string[] = [
  '%7B',
  'null',
  '%5B%5D',
  '%22x%22',
  encodeURIComponent('{"room":{"timeline":{"limit":"x"}}}'),
  encodeURIComponent('{"room":{"timeline":{"limit":-1}}}'),
  encodeURIComponent('{"room":{"timeline":{"limit":1e300}}}'),
  encodeURIComponent('{"room":{"rooms":"x"}}'),
  encodeURIComponent('{"event_fields":[1]}'),
  encodeURIComponent('{"room":{"state":{"types":[null]}}}'),
  encodeURIComponent('{"\\u0000":"\\ud800"}'),
  '99999999999999999999',
  '-1',
  '%FF',
  encodeURIComponent('['.repeat(3000) + ']'.repeat(3000)),
  encodeURIComponent('{"a":'.repeat(1500) + '1' + '}'.repeat(1500)),
];

const NESTED_VALUES: readonly unknown[] = [
  'x',
  '',
  1,
  -1,
  0.5,
  1e300,
  -(2 ** 63),
  2 ** 53 + 2,
  true,
  null,
  {},
  [],
  [null],
  [1, 'x'],
  { '': 1 },
  { x: [{}] },
  'x'.repeat(70 * KB),
];

const shortJson = (v: unknown): string => {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 30 ? `${text.slice(0, 20)}…(${text.length} chars)` : text;
};

/** Paths (keys and indexes) of every value below the top level of `value`, plus each container's new key. */
function innerPositions(
  value: unknown,
  prefix: (string | number)[] = [],
  out: (string | number)[][] = [],
): (string | number)[][] {
  if (out.length > 200 || prefix.length > 8) return out;
  if (Array.isArray(value)) {
    if (prefix.length > 0) out.push([...prefix, value.length]);
    value.forEach((v, i) => {
      if (prefix.length > 0) out.push([...prefix, i]);
      innerPositions(v, [...prefix, i], out);
    });
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (prefix.length > 0) out.push([...prefix, k]);
      innerPositions(v, [...prefix, k], out);
    }
  }
  return out;
}

/** A deep copy of `value` with the value at `path` replaced. */
function replaceAt(value: unknown, path: readonly (string | number)[], replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const [head, ...rest] = path as [string | number, ...(string | number)[]];
  if (Array.isArray(value)) {
    const copy = [...value];
    copy[head as number] = replaceAt(copy[head as number], rest, replacement);
    return copy;
  }
  const obj = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  return { ...obj, [head]: replaceAt(obj[head], rest, replacement) };
}

export interface OperationPlan {
  /** Request path with real ids (txnId fresh each time), query and token as a valid request would send them. */
  label?: string;
  pathFor(override?: { name: string; raw: string }): string;
  query: Record<string, string>;
  body: Record<string, unknown> | undefined;
  token: string;
}

/** The fuzz requests of one operation, at most `cap` of them (a seeded random sample when there are more). */
export function fuzzCases(
  op: Operation,
  plan: OperationPlan,
  rng: Rng,
  cap: number,
  breadth = 1,
): FuzzRequest[] {
  const cases: FuzzRequest[] = [];
  const token = op.auth === 'none' ? null : plan.token;
  const qs = (q: Record<string, string>): string => {
    const parts = Object.entries(q).map(([k, v]) => `${encodeURIComponent(k)}=${v}`);
    return parts.length ? `?${parts.join('&')}` : '';
  };
  const baseQuery = Object.fromEntries(
    Object.entries(plan.query).map(([k, v]) => [k, encodeURIComponent(v)]),
  );
  const url = (query = baseQuery, override?: { name: string; raw: string }): string =>
    plan.pathFor(override) + qs(query);
  const jsonBody = (text: string | Buffer): Pick<FuzzRequest, 'body' | 'contentType'> =>
    op.body === 'json'
      ? { body: Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8'), contentType: 'application/json' }
      : {};
  const base = plan.body ?? {};
  const withBody = (name: string, value: unknown, extra: Partial<FuzzRequest> = {}): void => {
    cases.push({ name, method: op.method, path: url(), token, ...jsonBody(toJson(value)), ...extra });
  };

  // Always: the valid request, and the request without a token.
  const essentials: FuzzRequest[] = [];
  essentials.push({ name: 'valid', method: op.method, path: url(), token, ...jsonBody(toJson(base)) });
  if (op.auth !== 'none') {
    essentials.push({
      name: 'no token',
      method: op.method,
      path: url(),
      token: null,
      ...jsonBody(toJson(base)),
    });
  }
  if (rng.next() < 0.3) {
    const bad = rng.pick(['x', 'syt_' + 'a'.repeat(2000), 'null', '%00', '\xff']);
    cases.push({
      name: `bad token ${JSON.stringify(bad.slice(0, 12))}`,
      method: op.method,
      path: url(),
      token: bad,
    });
  }
  if (op.auth !== 'none' && rng.next() < 0.3) {
    // The deprecated query-string token (spec v1.11), with a bad value and without the header.
    const bad = rng.pick(['', '%00', '%FF%FE', 'x'.repeat(5000), plan.token + '%00', 'syt_x&access_token=y']);
    const path = url();
    cases.push({
      name: `bad access_token query ${JSON.stringify(bad.slice(0, 12))}`,
      method: op.method,
      path: `${path}${path.includes('?') ? '&' : '?'}access_token=${bad}`,
      token: null,
      ...jsonBody(toJson(base)),
    });
  }

  if (op.body === 'json') {
    for (const text of rng.sample(MALFORMED, 3 * breadth)) {
      cases.push({
        name: `malformed JSON ${JSON.stringify(text)}`,
        method: op.method,
        path: url(),
        token,
        ...jsonBody(text),
      });
    }
    for (const text of rng.sample(NON_OBJECT, 2 * breadth)) {
      cases.push({
        name: `non-object JSON ${text}`,
        method: op.method,
        path: url(),
        token,
        ...jsonBody(text),
      });
    }
    const utf8 = rng.pick(INVALID_UTF8);
    cases.push({ name: 'invalid UTF-8 in body', method: op.method, path: url(), token, ...jsonBody(utf8) });
    const [ctLabel, contentType, text] = rng.pick([
      ['byte order mark', 'application/json', '\ufeff' + toJson(base)],
      ['text/plain content type', 'text/plain', toJson(base)],
      ['UTF-16 charset', 'application/json; charset=utf-16', toJson(base)],
      ['form content type', 'application/x-www-form-urlencoded', 'a=1&b=2'],
      ['no content type', '', toJson(base)],
    ] as const);
    cases.push({
      name: `body with ${ctLabel}`,
      method: op.method,
      path: url(),
      token,
      body: Buffer.from(text, 'utf8'),
      contentType,
    });
    cases.push({
      name: 'empty body with JSON content type',
      method: op.method,
      path: url(),
      token,
      body: Buffer.alloc(0),
      contentType: 'application/json',
    });

    const fields = op.fields.length
      ? op.fields
      : Object.keys(base).map((name) => ({ name, type: 'unknown' as JsonType }));
    for (const f of fields) {
      for (const v of rng.sample(wrongValues(f.type), 2 * breadth)) {
        withBody(`wrong type ${f.name}=${JSON.stringify(v)}`, { ...base, [f.name]: v });
      }
    }
    for (const r of op.required) {
      const { [r]: _dropped, ...rest } = base;
      withBody(`missing required ${r}`, rest);
    }
    const stringFields = fields.filter((f) => f.type === 'string' || f.type === 'unknown');
    for (const f of rng.sample(
      stringFields.length ? stringFields : [{ name: 'body', type: 'string' as JsonType }],
      2,
    )) {
      withBody(`100 KB string in ${f.name}`, { ...base, [f.name]: 'x'.repeat(100 * KB) });
    }
    withBody('70 KB body', { ...base, fuzz_padding: 'p'.repeat(70 * KB) });
    withBody('20,000 keys', {
      ...base,
      many: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, 0])),
    });
    const deep = rng.pick([
      ['10,000-deep array', nestedArray(10_000)],
      ['10,000-deep object', nestedObject(10_000)],
    ] as const);
    withBody(`${deep[0]} in extra field`, { ...base, fuzz_nested: deep[1] });
    const containers = fields.filter(
      (f) => f.type === 'object' || f.type === 'array' || f.type === 'unknown',
    );
    for (const f of rng.sample(containers, 2 * breadth)) {
      const [label, value] = rng.pick([
        ['10,000-deep array', nestedArray(10_000)],
        ['10,000-deep object', nestedObject(10_000)],
        ['101-deep array', nestedArray(101)],
        ['99-deep object', nestedObject(99)],
      ] as const);
      withBody(`${label} in ${f.name}`, { ...base, [f.name]: value });
    }
    withBody('10,000-deep array as body', nestedArray(10_000));
    for (const f of rng.sample(
      stringFields.length ? stringFields : [{ name: 'body', type: 'string' as JsonType }],
      2,
    )) {
      const v = rng.pick(BAD_STRINGS);
      withBody(`bad string ${f.name}=${JSON.stringify(v)}`, { ...base, [f.name]: v });
    }
    const key = rng.pick(BAD_KEYS);
    withBody(`bad top-level key ${JSON.stringify(key)}`, { ...base, [key]: rng.pick(BAD_STRINGS) });
    // Wrong values deeper down: every position below the top level of the valid body is a candidate.
    const positions = innerPositions(base);
    for (const path of rng.sample(positions, 6 * breadth)) {
      const v = rng.pick(NESTED_VALUES);
      withBody(`nested ${path.join('.')}=${shortJson(v)}`, replaceAt(base, path, v));
    }
    const objectFields = fields.filter((f) => f.type === 'object' || f.type === 'unknown');
    for (const f of rng.sample(objectFields, 1 * breadth)) {
      const k = rng.pick(BAD_KEYS);
      withBody(`bad key ${JSON.stringify(k)} inside ${f.name}`, {
        ...base,
        [f.name]: { [k]: rng.pick(BAD_STRINGS), ok: { [k]: 1 } },
      });
    }
  }

  for (const p of op.pathParams) {
    for (const [label, raw] of rng.sample(BAD_PATH, 4 * breadth)) {
      cases.push({
        name: `path ${p}: ${label}`,
        method: op.method,
        path: url(baseQuery, { name: p, raw }),
        token,
        ...jsonBody(toJson(base)),
      });
    }
  }

  for (const q of op.query) {
    const isTimeout = q.name === 'timeout' || q.name === 'timeout_ms';
    let values: readonly string[];
    if (q.name === 'filter') {
      values = [
        ...BAD_FILTERS,
        ...innerPositions(FULL_FILTER).map((path) =>
          encodeURIComponent(toJson(replaceAt(FULL_FILTER, path, rng.pick(NESTED_VALUES.slice(0, -1))))),
        ),
      ];
    } else if (q.type === 'integer' || q.type === 'number') values = BAD_INTEGERS;
    else if (q.type === 'boolean') values = BAD_BOOLEANS;
    else values = BAD_QUERY_STRINGS;
    for (const v of rng.sample(values, 3 * breadth)) {
      // A (huge) timeout on a long-poll endpoint may be a legitimate wait, not a hang.
      const mayHang = isTimeout;
      cases.push({
        name: `query ${q.name}=${v.length > 40 ? `${v.slice(0, 20)}…(${v.length} chars)` : v}`,
        method: op.method,
        path: url({ ...baseQuery, [q.name]: v }),
        token,
        mayHang,
        ...jsonBody(toJson(base)),
      });
    }
    cases.push({
      name: `query ${q.name} repeated`,
      method: op.method,
      path:
        url(baseQuery) + `${Object.keys(baseQuery).length ? '&' : '?'}${q.name}=1&${q.name}=2&${q.name}[]=3`,
      token,
      ...jsonBody(toJson(base)),
    });
  }
  if (rng.next() < 0.3) {
    cases.push({
      name: 'unknown query parameter with bad value',
      method: op.method,
      path: url({ ...baseQuery, '\u00e9\u0000': '%FF' }),
      token,
      ...jsonBody(toJson(base)),
    });
  }

  const rest = rng.shuffle(cases).slice(0, Math.max(0, cap - essentials.length));
  return [...essentials, ...rest];
}

/**
 * Body-only cases for one more valid body of an operation (another event type, another account data type): the
 * valid body, each top-level key with a wrong value or dropped, and wrong values deeper down.
 */
export function bodyCases(op: Operation, plan: OperationPlan, rng: Rng, cap: number): FuzzRequest[] {
  const base = plan.body ?? {};
  const token = op.auth === 'none' ? null : plan.token;
  const make = (name: string, value: unknown): FuzzRequest => ({
    name: plan.label ? `${plan.label}: ${name}` : name,
    method: op.method,
    path: plan.pathFor(),
    token,
    body: Buffer.from(toJson(value), 'utf8'),
    contentType: 'application/json',
  });
  const cases: FuzzRequest[] = [];
  for (const key of Object.keys(base)) {
    const v = rng.pick(NESTED_VALUES);
    cases.push(make(`${key}=${shortJson(v)}`, { ...base, [key]: v }));
    const { [key]: _dropped, ...rest } = base;
    cases.push(make(`without ${key}`, rest));
  }
  for (const path of innerPositions(base)) {
    const v = rng.pick(NESTED_VALUES);
    cases.push(make(`${path.join('.')}=${shortJson(v)}`, replaceAt(base, path, v)));
  }
  return [make('valid', base), ...rng.shuffle(cases).slice(0, Math.max(0, cap - 1))];
}
