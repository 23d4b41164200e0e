/**
 * The fuzz run: builds the fixture (users, a room with a message, a device, a filter, media, a key backup), plans
 * every operation with real ids, sends the cases over raw HTTP and collects findings: a 5xx, a non-2xx whose body is
 * not a Matrix error, no answer, or a fixture user the server no longer serves afterwards.
 */
import http from 'node:http';
import { sql } from 'kysely';
import type { TestServer } from '../../helpers/server.js';
import { bodyCases, fuzzCases, Rng, type FuzzIds, type FuzzRequest, type OperationPlan } from './cases.js';
import type { Operation } from './spec.js';

export interface Finding {
  method: string;
  path: string;
  case: string;
  status: number | string;
  body: string;
}

export interface FuzzStats {
  operations: number;
  requests: number;
  /** Operations whose valid request answered 404/405 M_UNRECOGNIZED (not served by Hearth). */
  unimplemented: string[];
  ms: number;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

const REQUEST_TIMEOUT_MS = 10_000;
const HANG_TIMEOUT_MS = 500;

/** One raw HTTP request: the path goes on the wire byte for byte (latin-1), the body as given. */
function send(base: URL, req: FuzzRequest, agent: http.Agent | false): Promise<Answer | { error: string }> {
  return new Promise((resolve) => {
    const headers: http.OutgoingHttpHeaders = {};
    if (req.token !== null) headers.authorization = `Bearer ${req.token}`;
    if (req.body) {
      if (req.contentType !== '') headers['content-type'] = req.contentType ?? 'application/json';
      headers['content-length'] = req.body.length;
    }
    let settled = false;
    const finish = (v: Answer | { error: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(v);
    };
    let r: http.ClientRequest;
    try {
      r = http.request(
        { host: base.hostname, port: base.port, method: req.method, path: req.path, headers, agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            finish({
              status: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.on('error', (err) => finish({ error: `response error: ${err.message}` }));
        },
      );
    } catch (err) {
      resolve({ error: `client refused to send: ${(err as Error).message}` });
      return;
    }
    const timer = setTimeout(
      () => {
        finish({ error: req.mayHang ? 'long poll' : `no answer within ${REQUEST_TIMEOUT_MS} ms` });
        r.destroy();
      },
      req.mayHang ? HANG_TIMEOUT_MS : REQUEST_TIMEOUT_MS,
    );
    r.on('error', (err) => finish({ error: `request error: ${err.message}` }));
    r.end(req.body);
  });
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** What is wrong with an answer, or undefined. */
export function problemWith(answer: Answer, path: string): string | undefined {
  const { status } = answer;
  const contentType = answer.headers['content-type'] ?? '';
  if (status >= 200 && status < 300) {
    // Media downloads and thumbnails answer with the file; every other 2xx is JSON (GET state is an array).
    if (/^\/_matrix\/(client\/v1\/)?media\/(v3\/)?(download|thumbnail)\//.test(path)) return undefined;
    try {
      JSON.parse(answer.text);
    } catch {
      return '2xx body is not JSON';
    }
    return contentType.startsWith('application/json') ? undefined : `2xx Content-Type ${contentType}`;
  }
  if (status >= 300 && status < 400 && answer.headers.location) return undefined;
  if (!contentType.startsWith('application/json')) return `non-2xx Content-Type ${contentType}`;
  let body: unknown;
  try {
    body = JSON.parse(answer.text);
  } catch {
    return 'non-2xx body is not JSON';
  }
  if (!isRecord(body) || typeof body.errcode !== 'string' || typeof body.error !== 'string') {
    return 'non-2xx body is not {"errcode": string, "error": string}';
  }
  if (status >= 500 && !(status === 504 && body.errcode === 'M_NOT_YET_UPLOADED')) return '5xx';
  if (status < 400) return 'non-2xx without a Matrix error status';
  return undefined;
}

function shorten(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max)}…(${flat.length} chars)` : flat;
}

async function call(
  server: TestServer,
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await server.client(token).request(method, path, body);
  return { status: res.status, body: res.body };
}

async function ok(
  server: TestServer,
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const res = await call(server, method, path, token, body);
  if (res.status !== 200)
    throw new Error(`fixture: ${method} ${path} → ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const enc = encodeURIComponent;

/**
 * The first room event in a /sync or /messages answer larger than the PDU limit (its client form without
 * `unsigned` is smaller than the PDU, so a larger one proves the server built an oversized event).
 */
function oversizedEvent(body: unknown, depth = 0): string | undefined {
  if (depth > 8 || typeof body !== 'object' || body === null) return undefined;
  if (Array.isArray(body)) {
    for (const item of body) {
      const found = oversizedEvent(item, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  const record = body as Record<string, unknown>;
  if (typeof record.event_id === 'string' && typeof record.type === 'string') {
    const { unsigned: _unsigned, ...event } = record;
    const size = Buffer.byteLength(JSON.stringify(event));
    return size > 65536 ? `${record.type} ${record.event_id} is ${size} bytes` : undefined;
  }
  for (const value of Object.values(record)) {
    const found = oversizedEvent(value, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** A 1×1 PNG. */
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);

/** The fixture user with a room, a message, a second device, a filter, media, a key backup and a push rule. */
export async function makeFixture(server: TestServer): Promise<FuzzIds> {
  const me = await server.user('fuzz');
  const peer = await server.user('fuzzpeer');
  const second = await ok(server, 'POST', '/_matrix/client/v3/login', undefined, {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user: 'fuzz' },
    password: 'correct horse battery staple',
  });
  const room = await ok(server, 'POST', '/_matrix/client/v3/createRoom', me.token, {
    preset: 'public_chat',
    room_alias_name: 'fuzz',
    name: 'Fuzz',
  });
  const roomId = room.room_id as string;
  await ok(server, 'POST', `/_matrix/client/v3/join/${enc(roomId)}`, peer.token, {});
  const sent = await ok(
    server,
    'PUT',
    `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/fx1`,
    me.token,
    {
      msgtype: 'm.text',
      body: 'hello fuzz',
    },
  );
  const filter = await ok(server, 'POST', `/_matrix/client/v3/user/${enc(me.userId)}/filter`, me.token, {
    room: { timeline: { limit: 5 } },
  });
  const upload = await fetch(`${server.url}/_matrix/media/v3/upload?filename=fuzz.png`, {
    method: 'POST',
    headers: { authorization: `Bearer ${me.token}`, 'content-type': 'image/png' },
    body: PNG,
  });
  const uploaded = (await upload.json()) as { content_uri?: string };
  if (!uploaded.content_uri) throw new Error(`fixture: upload failed ${JSON.stringify(uploaded)}`);
  const backup = await ok(server, 'POST', '/_matrix/client/v3/room_keys/version', me.token, {
    algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2',
    auth_data: { public_key: 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo' },
  });
  await ok(server, 'PUT', '/_matrix/client/v3/pushrules/global/override/fuzzrule', me.token, {
    actions: ['notify'],
    conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'fuzz' }],
  });
  return {
    serverName: server.serverName,
    userId: me.userId,
    token: me.token as string,
    deviceId: me.deviceId,
    otherDeviceId: second.device_id as string,
    peerId: peer.userId,
    peerToken: peer.token as string,
    roomId,
    roomAlias: `#fuzz:${server.serverName}`,
    eventId: sent.event_id as string,
    filterId: filter.filter_id as string,
    mediaId: uploaded.content_uri.split('/').pop() as string,
    backupVersion: backup.version as string,
  };
}

/**
 * Operations that would destroy the fixture (log it out, deactivate it, remove its devices, make it leave its
 * room): each runs last, as a fresh throwaway user with its own room.
 */
const DESTRUCTIVE = new Set([
  'POST /_matrix/client/v3/account/deactivate',
  'POST /_matrix/client/v3/logout',
  'POST /_matrix/client/v3/logout/all',
  'POST /_matrix/client/v3/delete_devices',
  'DELETE /_matrix/client/v3/devices/{deviceId}',
  'POST /_matrix/client/v3/account/password',
  'POST /_matrix/client/v3/rooms/{roomId}/leave',
  'POST /_matrix/client/v3/rooms/{roomId}/forget',
  'POST /_matrix/client/v3/rooms/{roomId}/kick',
  'POST /_matrix/client/v3/rooms/{roomId}/ban',
  'POST /_matrix/client/v3/rooms/{roomId}/upgrade',
]);

/** Operations that remove a fixture resource other operations use: run after the others. */
const REMOVES_RESOURCE = new Set([
  'DELETE /_matrix/client/v3/directory/room/{roomAlias}',
  'DELETE /_matrix/client/v3/room_keys/version/{version}',
  'DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}',
]);

/** Long-poll endpoints: without a timeout they may wait for the server's default. */
const LONG_POLL = /^\/_matrix\/client\/(v3|r0)\/(events|sync)\/?$/;

const opKey = (op: Operation): string => `${op.method} ${op.path}`;

let throwaways = 0;

async function throwawayIds(server: TestServer, ids: FuzzIds): Promise<FuzzIds> {
  const u = await server.user(`fuzzthrow${++throwaways}`);
  const room = await ok(server, 'POST', '/_matrix/client/v3/createRoom', u.token, { preset: 'private_chat' });
  const roomId = room.room_id as string;
  await ok(server, 'POST', `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, u.token, {
    user_id: ids.peerId,
  });
  return {
    ...ids,
    userId: u.userId,
    token: u.token as string,
    deviceId: u.deviceId,
    otherDeviceId: u.deviceId,
    roomId,
  };
}

/** Replaces the example.com ids of a spec example with the fixture's. */
function substitute(value: unknown, ids: FuzzIds): unknown {
  if (typeof value === 'string') {
    if (/^@[^:]+:/.test(value)) return ids.peerId;
    if (/^![^:]+:/.test(value)) return ids.roomId;
    if (/^#[^:]+:/.test(value)) return ids.roomAlias;
    if (/^\$./.test(value)) return ids.eventId;
    if (value.startsWith('mxc://')) return `mxc://${ids.serverName}/${ids.mediaId}`;
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, ids));
  if (isRecord(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[substitute(k, ids) as string] = substitute(v, ids);
    return out;
  }
  return value;
}

function defaultFor(type: string): unknown {
  switch (type) {
    case 'string':
      return 'fuzz';
    case 'integer':
    case 'number':
      return 1;
    case 'boolean':
      return true;
    case 'array':
      return [];
    default:
      return {};
  }
}

/** Bodies that get a handler past its first checks, where the spec example does not fit the fixture. */
function baseBody(op: Operation, ids: FuzzIds): Record<string, unknown> | undefined {
  if (op.body !== 'json') return undefined;
  const session = {
    first_message_index: 1,
    forwarded_count: 0,
    is_verified: false,
    session_data: { ephemeral: 'e', ciphertext: 'c', mac: 'm' },
  };
  switch (opKey(op)) {
    case 'POST /_matrix/client/v3/createRoom':
      return { preset: 'private_chat', name: 'fuzz', topic: 'fuzz', invite: [ids.peerId], is_direct: false };
    case 'POST /_matrix/client/v3/login':
      return {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: 'fuzzpeer' },
        password: 'wrong password',
      };
    case 'POST /_matrix/client/v3/register':
      return { username: 'fuzzreg', password: 'a fuzz password 123', auth: { type: 'm.login.dummy' } };
    case 'POST /_matrix/client/v3/keys/query':
      return { device_keys: { [ids.userId]: [], [ids.peerId]: [] }, timeout: 100 };
    case 'POST /_matrix/client/v3/keys/claim':
      return { one_time_keys: { [ids.userId]: { [ids.deviceId]: 'signed_curve25519' } }, timeout: 100 };
    case 'PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}':
      return {
        messages: { [ids.peerId]: { '*': { body: 'fuzz' } }, [ids.userId]: { [ids.otherDeviceId]: {} } },
      };
    case 'POST /_matrix/client/v3/room_keys/version':
    case 'PUT /_matrix/client/v3/room_keys/version/{version}':
      return {
        algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2',
        auth_data: { public_key: 'abc' },
        version: ids.backupVersion,
      };
    case 'PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}':
      return session;
    case 'PUT /_matrix/client/v3/room_keys/keys/{roomId}':
      return { sessions: { fuzzsession: session } };
    case 'PUT /_matrix/client/v3/room_keys/keys':
      return { rooms: { [ids.roomId]: { sessions: { fuzzsession: session } } } };
    case 'POST /_matrix/client/v3/user_directory/search':
      return { search_term: 'fuzz', limit: 5 };
    case 'POST /_matrix/client/v3/rooms/{roomId}/read_markers':
      return { 'm.fully_read': ids.eventId, 'm.read': ids.eventId };
    case 'PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}':
      return { typing: true, timeout: 1000 };
    case 'POST /_matrix/client/v3/account/password':
      return { new_password: 'another fuzz password', logout_devices: false };
    case 'POST /_matrix/client/v3/delete_devices':
      return { devices: [ids.deviceId] };
    case 'POST /_matrix/client/v3/keys/upload':
      return {
        device_keys: {
          user_id: ids.userId,
          device_id: ids.deviceId,
          algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
          keys: { [`curve25519:${ids.deviceId}`]: 'curve', [`ed25519:${ids.deviceId}`]: 'ed' },
          signatures: { [ids.userId]: { [`ed25519:${ids.deviceId}`]: 'sig' } },
        },
        one_time_keys: { 'signed_curve25519:AAAAAQ': { key: 'k', signatures: {} } },
        fallback_keys: { 'signed_curve25519:AAAAAg': { key: 'f', fallback: true, signatures: {} } },
      };
    case 'PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}':
      return { order: 0.5 };
    case 'PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}':
      return { fuzz: true, body: 'state' };
    case 'PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}':
      return { msgtype: 'm.text', body: 'fuzz' };
    case 'PUT /_matrix/client/v3/profile/{userId}/{keyName}':
      return { displayname: 'Fuzz' };
    default:
      break;
  }
  const example = substitute(op.example, ids);
  if (isRecord(example)) return example;
  const body: Record<string, unknown> = {};
  for (const r of op.required) body[r] = defaultFor(op.fields.find((f) => f.name === r)?.type ?? 'string');
  return body;
}

/** Query parameters a valid request sends. */
function baseQuery(op: Operation, ids: FuzzIds): Record<string, string> {
  const q: Record<string, string> = {};
  for (const p of op.query) {
    if (p.name === 'version' && op.path.includes('/room_keys/')) q.version = ids.backupVersion;
    else if (p.name === 'ts') q.ts = String(Date.now());
    else if (p.name === 'dir') q.dir = 'b';
    else if (p.name === 'user_id') q.user_id = ids.peerId;
    else if (p.name === 'username') q.username = 'fuzznew';
    else if (p.name === 'timeout' || p.name === 'timeout_ms') q[p.name] = '0';
    else if (p.name === 'filename') q.filename = 'fuzz.png';
    else if (p.name === 'url') q.url = 'http://127.0.0.1:1/';
    else if (p.required) q[p.name] = 'fuzz';
  }
  return q;
}

let txn = 0;

/** The real value of a path parameter (already percent-encoded). */
function pathValue(op: Operation, name: string, ids: FuzzIds): string {
  switch (name) {
    case 'userId':
      return enc(op.path.includes('/users/{userId}/report') ? ids.peerId : ids.userId);
    case 'roomId':
    case 'roomIdOrAlias':
      return enc(ids.roomId);
    case 'roomAlias':
      return enc(ids.roomAlias);
    case 'eventId':
      return enc(ids.eventId);
    case 'deviceId':
      return enc(op.method === 'DELETE' ? ids.deviceId : ids.otherDeviceId);
    case 'filterId':
      return ids.filterId;
    case 'txnId':
      return `fz${++txn}`;
    case 'eventType':
      if (op.path.includes('/state/')) return 'org.example.fuzz.state';
      if (op.path.includes('/sendToDevice/')) return 'org.example.fuzz.todevice';
      if (op.path.includes('/relations/')) return 'm.reaction';
      return 'm.room.message';
    case 'stateKey':
      return 'k';
    case 'type':
      return 'org.example.fuzz';
    case 'tag':
      return 'u.fuzz';
    case 'kind':
      return 'override';
    case 'ruleId':
      return 'fuzzrule';
    case 'receiptType':
      return 'm.read';
    case 'relType':
      return 'm.annotation';
    case 'serverName':
      return ids.serverName;
    case 'mediaId':
      return ids.mediaId;
    case 'fileName':
      return 'fuzz.png';
    case 'version':
      return ids.backupVersion;
    case 'sessionId':
      return 'fuzzsession';
    case 'keyName':
      return 'displayname';
    case 'protocol':
    case 'networkId':
      return 'irc';
    default:
      return 'fuzz';
  }
}

function planFor(op: Operation, ids: FuzzIds, variant?: Variant): OperationPlan {
  const pathValues = variant?.path?.(ids) ?? {};
  return {
    label: variant?.label,
    pathFor(override) {
      return op.path.replace(/\{([^}]+)\}/g, (_m, name: string) => {
        if (override?.name === name) return override.raw;
        const fixed = pathValues[name];
        return fixed !== undefined ? enc(fixed) : pathValue(op, name, ids);
      });
    },
    query: baseQuery(op, ids),
    body: variant ? variant.body(ids) : baseBody(op, ids),
    token: ids.token,
  };
}

/** One more valid request of an operation whose body (and some path values) are fuzzed on their own. */
interface Variant {
  label: string;
  path?: (ids: FuzzIds) => Record<string, string>;
  body: (ids: FuzzIds) => Record<string, unknown>;
  /** Runs in a new room of the fixture user (state that could lock the fixture out of its room). */
  freshRoom?: boolean;
  /** The version of that room (the server's default when absent). */
  roomVersion?: string;
}

const VARIANT_CAP = 10;
/** Probes of the fixture after accepted requests, per batch. */
const MAX_PROBES_PER_BATCH = 3;

const mxc = (ids: FuzzIds): string => `mxc://${ids.serverName}/${ids.mediaId}`;

function stateVariant(
  type: string,
  body: (ids: FuzzIds) => Record<string, unknown>,
  stateKey: (ids: FuzzIds) => string = () => '',
  roomVersion?: string,
): Variant {
  return {
    label: `${type} state${roomVersion ? ` (room version ${roomVersion})` : ''}`,
    path: (ids) => ({ eventType: type, stateKey: stateKey(ids) }),
    body,
    freshRoom: true,
    roomVersion,
  };
}

const powerLevels = (ids: FuzzIds): Record<string, unknown> => ({
  users: { [ids.userId]: 100, [ids.peerId]: 50 },
  users_default: 0,
  events: { 'm.room.name': 50, 'm.room.power_levels': 100 },
  events_default: 0,
  state_default: 50,
  ban: 50,
  kick: 50,
  redact: 50,
  invite: 0,
  notifications: { room: 50 },
});

/** Room versions 1-9 accept power levels written as numeric strings; later code must cope with them. */
const stringPowerLevels = (ids: FuzzIds): Record<string, unknown> => ({
  users: { [ids.userId]: '100', [ids.peerId]: ' 50' },
  users_default: '0',
  events: { 'm.room.name': '+50' },
  events_default: '0',
  state_default: '50',
  ban: '50',
  kick: '50',
  redact: '50',
  invite: '0',
  notifications: { room: '50' },
});

function eventVariant(type: string, body: (ids: FuzzIds) => Record<string, unknown>): Variant {
  return { label: `${type} event`, path: () => ({ eventType: type }), body };
}

function accountDataVariant(type: string, body: (ids: FuzzIds) => Record<string, unknown>): Variant {
  return { label: `${type} account data`, path: () => ({ type }), body };
}

/**
 * The event types, account data types and receipt types whose content the server reads (auth rules, read models,
 * sync, push rules): each is fuzzed from a valid body of its own.
 */
const VARIANTS: Record<string, Variant[]> = {
  'PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}': [
    stateVariant('m.room.name', () => ({ name: 'fuzz' })),
    stateVariant('m.room.topic', () => ({
      topic: 'fuzz',
      'm.topic': [{ body: 'fuzz', mimetype: 'text/plain' }],
    })),
    stateVariant('m.room.avatar', (ids) => ({
      url: mxc(ids),
      info: { w: 1, h: 1, mimetype: 'image/png', size: 1 },
    })),
    stateVariant('m.room.join_rules', (ids) => ({
      join_rule: 'restricted',
      allow: [{ type: 'm.room_membership', room_id: ids.roomId }],
    })),
    stateVariant('m.room.history_visibility', () => ({ history_visibility: 'joined' })),
    stateVariant('m.room.guest_access', () => ({ guest_access: 'can_join' })),
    stateVariant('m.room.canonical_alias', (ids) => ({ alias: ids.roomAlias, alt_aliases: [ids.roomAlias] })),
    stateVariant('m.room.server_acl', () => ({
      allow: ['*'],
      deny: ['evil.example'],
      allow_ip_literals: false,
    })),
    stateVariant('m.room.encryption', () => ({
      algorithm: 'm.megolm.v1.aes-sha2',
      rotation_period_ms: 604800000,
    })),
    stateVariant('m.room.pinned_events', (ids) => ({ pinned: [ids.eventId] })),
    stateVariant('m.room.tombstone', (ids) => ({ body: 'moved', replacement_room: ids.roomId })),
    stateVariant(
      'm.space.child',
      (ids) => ({ via: [ids.serverName], order: 'a', suggested: true }),
      (ids) => ids.roomId,
    ),
    stateVariant(
      'm.space.parent',
      (ids) => ({ via: [ids.serverName], canonical: true }),
      (ids) => ids.roomId,
    ),
    stateVariant(
      'm.room.member',
      (ids) => ({ membership: 'join', displayname: 'Fuzz', avatar_url: mxc(ids), reason: 'fuzz' }),
      (ids) => ids.userId,
    ),
    stateVariant(
      'm.room.member',
      () => ({ membership: 'ban', reason: 'fuzz' }),
      (ids) => ids.peerId,
    ),
    stateVariant('m.room.create', () => ({ room_version: '10' })),
    stateVariant('m.room.power_levels', powerLevels),
    stateVariant('m.room.power_levels', powerLevels, undefined, '1'),
    stateVariant('m.room.power_levels', stringPowerLevels, undefined, '1'),
    stateVariant('m.room.power_levels', stringPowerLevels, undefined, '9'),
    stateVariant('m.room.join_rules', () => ({ join_rule: 'knock' }), undefined, '7'),
    stateVariant(
      'm.room.member',
      () => ({ membership: 'join', displayname: 'Fuzz' }),
      (ids) => ids.userId,
      '2',
    ),
    stateVariant('m.room.create', () => ({ room_version: '1' }), undefined, '1'),
  ],
  'PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}': [
    eventVariant('m.room.message', (ids) => ({
      msgtype: 'm.text',
      body: 'fuzz reply',
      format: 'org.matrix.custom.html',
      formatted_body: '<b>fuzz</b>',
      'm.relates_to': {
        rel_type: 'm.thread',
        event_id: ids.eventId,
        is_falling_back: true,
        'm.in_reply_to': { event_id: ids.eventId },
      },
      'm.mentions': { user_ids: [ids.userId], room: false },
    })),
    eventVariant('m.room.message', (ids) => ({
      msgtype: 'm.text',
      body: '* edit',
      'm.new_content': { msgtype: 'm.text', body: 'edit' },
      'm.relates_to': { rel_type: 'm.replace', event_id: ids.eventId },
    })),
    eventVariant('m.reaction', (ids) => ({
      'm.relates_to': { rel_type: 'm.annotation', event_id: ids.eventId, key: '👍' },
    })),
    eventVariant('m.room.redaction', (ids) => ({ redacts: ids.eventId, reason: 'fuzz' })),
    eventVariant('m.room.encrypted', (ids) => ({
      algorithm: 'm.megolm.v1.aes-sha2',
      ciphertext: 'AwgAEnAC',
      sender_key: 'sender',
      device_id: ids.deviceId,
      session_id: 'session',
    })),
    eventVariant('m.room.message', (ids) => ({
      msgtype: 'm.image',
      body: 'fuzz.png',
      url: mxc(ids),
      info: { w: 1, h: 1, size: 70, mimetype: 'image/png', thumbnail_url: mxc(ids) },
    })),
  ],
  'PUT /_matrix/client/v3/user/{userId}/account_data/{type}': [
    accountDataVariant('m.direct', (ids) => ({ [ids.peerId]: [ids.roomId] })),
    accountDataVariant('m.ignored_user_list', () => ({ ignored_users: { '@nobody:test.local': {} } })),
    accountDataVariant('m.push_rules', () => ({ global: { override: [] } })),
    accountDataVariant('m.identity_server', () => ({ base_url: 'https://id.example' })),
  ],
  'PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}': [
    accountDataVariant('m.fully_read', (ids) => ({ event_id: ids.eventId })),
    accountDataVariant('m.tag', () => ({ tags: { 'u.fuzz': { order: 0.5 }, 'm.favourite': {} } })),
    accountDataVariant('m.marked_unread', () => ({ unread: true })),
  ],
  'POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}': [
    {
      label: 'm.read.private receipt',
      path: () => ({ receiptType: 'm.read.private' }),
      body: () => ({ thread_id: 'main' }),
    },
    { label: 'm.fully_read receipt', path: () => ({ receiptType: 'm.fully_read' }), body: () => ({}) },
  ],
};

/**
 * Operations whose accepted value replaces the previous one (push rules, account data) or is used later by id
 * (filters): the fixture is probed after each 2xx, up to MAX_PROBES_PER_BATCH; `send`: the probe has the peer send
 * a message first, so that push rules are evaluated on it. Everything else is probed once after its batch (an
 * incremental /sync then covers every event the batch stored).
 */
const PROBE_AFTER_SUCCESS = new Map<string, { send: boolean }>([
  ['PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}', { send: true }],
  ['PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions', { send: true }],
  ['PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled', { send: true }],
  ['PUT /_matrix/client/v3/user/{userId}/account_data/{type}', { send: true }],
  ['PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}', { send: false }],
  ['POST /_matrix/client/v3/user/{userId}/filter', { send: true }],
]);

/** A new public room of the fixture user that the peer joined (undefined: the server has no such room version). */
async function probeRoomFor(
  server: TestServer,
  ids: FuzzIds,
  roomVersion?: string,
): Promise<string | undefined> {
  const res = await call(server, 'POST', '/_matrix/client/v3/createRoom', ids.token, {
    preset: 'public_chat',
    ...(roomVersion ? { room_version: roomVersion } : {}),
  });
  if (res.status === 400 && res.body.errcode === 'M_UNSUPPORTED_ROOM_VERSION') return undefined;
  if (res.status !== 200) throw new Error(`fixture: createRoom → ${res.status} ${JSON.stringify(res.body)}`);
  const roomId = res.body.room_id as string;
  await ok(server, 'POST', `/_matrix/client/v3/join/${enc(roomId)}`, ids.peerToken, {});
  return roomId;
}

export interface FuzzOptions {
  seed: number;
  /** Upper bound on fuzz requests (liveness checks not counted). */
  maxRequests: number;
  /** How many values of each list (bad path ids, bad query values, wrong types…) each parameter gets, ×1 by default. */
  breadth?: number;
  /** Called after each operation with a progress line (for debugging). */
  log?: (line: string) => void;
  /** Called with every request and its answer (for debugging). */
  trace?: (line: string) => void;
}

/** Fuzzes every operation against `server`; returns the findings. */
export async function runFuzz(
  server: TestServer,
  operations: readonly Operation[],
  opts: FuzzOptions,
): Promise<{ findings: Finding[]; stats: FuzzStats }> {
  const started = Date.now();
  const rng = new Rng(opts.seed);
  const base = new URL(server.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const findings: Finding[] = [];
  const unimplemented: string[] = [];
  const ids = await makeFixture(server);

  const order = [
    ...operations.filter((op) => !DESTRUCTIVE.has(opKey(op)) && !REMOVES_RESOURCE.has(opKey(op))),
    ...operations.filter((op) => REMOVES_RESOURCE.has(opKey(op))),
    ...operations.filter((op) => DESTRUCTIVE.has(opKey(op))),
  ];
  const cap = Math.max(4, Math.floor(opts.maxRequests / operations.length));
  let requests = 0;
  let since: string | undefined;

  /**
   * Whether the fixture user is still served: whoami, the peer sends a message to the fixture room (push rules and
   * unread counts run on it), and an incremental /sync of the fixture (with `filterId` when given); with `roomId`,
   * that room's /messages, /state and /members too.
   */
  const probe = async (
    after: Operation,
    label: string,
    extra: { roomId?: string; filterId?: string; send?: boolean } = {},
  ): Promise<boolean> => {
    const steps: [string, string, string | undefined, unknown][] = [
      ['GET', '/_matrix/client/v3/account/whoami', ids.token, undefined],
    ];
    if (extra.send) {
      steps.push([
        'PUT',
        `/_matrix/client/v3/rooms/${enc(ids.roomId)}/send/m.room.message/probe${++txn}`,
        ids.peerToken,
        { msgtype: 'm.text', body: 'fuzz probe for Fuzz @room' },
      ]);
    }
    steps.push([
      'GET',
      `/_matrix/client/v3/sync?timeout=0${since ? `&since=${enc(since)}` : ''}${extra.filterId ? `&filter=${enc(extra.filterId)}` : ''}`,
      ids.token,
      undefined,
    ]);
    if (extra.roomId) {
      const room = `/_matrix/client/v3/rooms/${enc(extra.roomId)}`;
      // The peer may have been banned or lost its power by the batch: its answer is only checked for a 5xx.
      const t0 = Date.now();
      const sent = await call(server, 'PUT', `${room}/send/m.room.message/probe${++txn}`, ids.peerToken, {
        msgtype: 'm.text',
        body: '@room fuzz probe',
      });
      opts.trace?.(`probe PUT ${room}/send | ${sent.status} | ${Date.now() - t0} ms`);
      if (sent.status >= 500) {
        findings.push({
          method: after.method,
          path: after.path,
          case: `after ${label}: the peer's message into the room fails`,
          status: sent.status,
          body: shorten(JSON.stringify(sent.body)),
        });
        return false;
      }
      steps.push(['GET', `${room}/messages?dir=b&limit=20`, ids.token, undefined]);
      steps.push(['GET', `${room}/state`, ids.token, undefined]);
      steps.push(['GET', `${room}/members`, ids.token, undefined]);
    }
    for (const [method, path, token, body] of steps) {
      const t0 = Date.now();
      const res = await call(server, method, path, token, body);
      opts.trace?.(`probe ${method} ${shorten(path, 100)} | ${res.status} | ${Date.now() - t0} ms`);
      if (path.includes('/sync?') && res.status === 200) since = res.body.next_batch as string;
      const oversized = res.status === 200 ? oversizedEvent(res.body) : undefined;
      if (oversized) {
        findings.push({
          method: after.method,
          path: after.path,
          case: `after ${label}: ${method} ${path.split('?')[0]} serves an event over 65536 bytes`,
          status: res.status,
          body: shorten(oversized),
        });
      }
      if (res.status === 200) continue;
      findings.push({
        method: after.method,
        path: after.path,
        case: `after ${label}: ${method} ${path.split('?')[0]} fails`,
        status: res.status,
        body: shorten(JSON.stringify(res.body)),
      });
      return false;
    }
    return true;
  };

  /** Sends one batch; after a 2xx of an operation that stores what it accepted, probes the fixture. */
  const runBatch = async (op: Operation, cases: FuzzRequest[], probeRoom?: string): Promise<boolean> => {
    const stores = PROBE_AFTER_SUCCESS.get(opKey(op));
    let probes = 0;
    for (const req of cases) {
      requests++;
      // A path that lands on a long-poll endpoint (e.g. /events/{eventId} with an empty id is /events/) may wait.
      if (LONG_POLL.test(req.path.split('?')[0] ?? '')) req.mayHang = true;
      const t0 = Date.now();
      let answer = await send(base, req, agent);
      // A kept-alive socket the server closed after its previous answer fails before any byte is sent: retry
      // once on a new connection, so that only a request the server itself drops is a finding.
      if ('error' in answer && answer.error.startsWith('request error'))
        answer = await send(base, req, false);
      opts.trace?.(
        `${req.method} ${shorten(req.path, 120)} | ${req.name} | ${'error' in answer ? answer.error : `${answer.status} ${shorten(answer.text, 160)}`} | ${Date.now() - t0} ms`,
      );
      if ('error' in answer) {
        if (answer.error === 'long poll') continue;
        findings.push({ method: op.method, path: op.path, case: req.name, status: answer.error, body: '' });
        continue;
      }
      if (
        req.name === 'valid' &&
        (answer.status === 404 || answer.status === 405) &&
        answer.text.includes('M_UNRECOGNIZED')
      ) {
        unimplemented.push(opKey(op));
      }
      const problem = problemWith(answer, req.path);
      if (problem) {
        findings.push({
          method: op.method,
          path: op.path,
          case: `${req.name} [${problem}]`,
          status: answer.status,
          body: shorten(answer.text),
        });
      }
      if (stores && answer.status === 200 && probes < MAX_PROBES_PER_BATCH) {
        probes++;
        let filterId: string | undefined;
        try {
          const parsed = JSON.parse(answer.text) as unknown;
          if (isRecord(parsed) && typeof parsed.filter_id === 'string') filterId = parsed.filter_id;
        } catch {
          // not JSON: nothing to follow
        }
        if (!(await probe(op, `accepted "${req.name}"`, { filterId, send: stores.send }))) return false;
      }
    }
    return probeRoom ? probe(op, 'the batch', { roomId: probeRoom }) : true;
  };

  for (const op of order) {
    const opIds = DESTRUCTIVE.has(opKey(op)) ? await throwawayIds(server, ids) : ids;
    const opStarted = Date.now();
    const before = requests;
    if (!(await runBatch(op, fuzzCases(op, planFor(op, opIds), rng, cap, opts.breadth ?? 1)))) break;
    let healthy = true;
    for (const variant of VARIANTS[opKey(op)] ?? []) {
      const roomId = variant.freshRoom ? await probeRoomFor(server, ids, variant.roomVersion) : undefined;
      if (variant.freshRoom && !roomId) continue;
      const vIds = roomId ? { ...ids, roomId } : ids;
      const plan = planFor(op, vIds, variant);
      healthy = await runBatch(op, bodyCases(op, plan, rng, VARIANT_CAP * (opts.breadth ?? 1)), roomId);
      if (!healthy) break;
    }
    if (!healthy) break;
    opts.log?.(
      `${opKey(op)}: ${requests - before} requests in ${Date.now() - opStarted} ms, ${findings.length} findings so far`,
    );
    if (!(await probe(op, 'the batch'))) break;
  }
  agent.destroy();
  // Every event stored, whoever built it (throwaway rooms included), fits the PDU limit.
  const oversized = await server.hs.storage.db
    .selectFrom('events')
    .select(['event_id', 'type', sql<number>`length(json)`.as('size')])
    .where(sql<number>`length(json)`, '>', 65536)
    .limit(20)
    .execute();
  for (const e of oversized) {
    findings.push({
      method: '-',
      path: 'events table',
      case: 'stored event over 65536 bytes',
      status: '-',
      body: `${e.type} ${e.event_id} is ${e.size} characters`,
    });
  }
  return {
    findings,
    stats: { operations: operations.length, requests, unimplemented, ms: Date.now() - started },
  };
}

/** A readable summary of the findings, one line each, grouped by operation. */
export function formatFindings(findings: readonly Finding[], max = 300): string {
  const lines = findings
    .slice(0, max)
    .map((f) => `${f.method} ${f.path} | ${f.case} | ${f.status} | ${f.body}`);
  if (findings.length > max) lines.push(`… and ${findings.length - max} more`);
  return lines.join('\n');
}
