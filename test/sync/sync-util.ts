/** Helpers shared by the /sync HTTP tests (test/sync/sync-*.test.ts): requests, section accessors, shape checks. */
import assert from 'node:assert/strict';
import type { Client, Json, Response } from '../helpers/server.js';

export type User = Client & { userId: string; deviceId: string };

export interface Timeline {
  events: Json[];
  limited: boolean;
  prev_batch?: string;
}

export interface SyncRoom {
  timeline: Timeline;
  state?: { events: Json[] };
  state_after?: { events: Json[] };
  summary?: Json;
  ephemeral?: { events: Json[] };
  account_data?: { events: Json[] };
  unread_notifications?: { notification_count: number; highlight_count: number };
}

export const enc = encodeURIComponent;

let txn = 0;

export type SyncParams = Record<string, string | number | boolean | object | undefined>;

/** GET /sync with the given query parameters (objects are sent as inline JSON filters); asserts 200. */
export async function sync(user: Client, params: SyncParams = {}): Promise<Json> {
  const res = await syncRaw(user, params);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

export function syncRaw(user: Client, params: SyncParams = {}): Promise<Response> {
  const qs = Object.entries(params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${enc(typeof v === 'object' ? JSON.stringify(v) : String(v))}`)
    .join('&');
  return user.get(`/_matrix/client/v3/sync${qs ? `?${qs}` : ''}`);
}

/** An incremental sync from `since` that answers at once. */
export function syncSince(user: Client, since: Json | string, params: SyncParams = {}): Promise<Json> {
  const token = typeof since === 'string' ? since : (since.next_batch as string);
  return sync(user, { timeout: 0, ...params, since: token });
}

export async function createRoom(user: Client, body: Json = {}): Promise<string> {
  const res = await user.post('/_matrix/client/v3/createRoom', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

export async function send(
  user: Client,
  roomId: string,
  content: Json,
  type = 'm.room.message',
): Promise<string> {
  const res = await user.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/${enc(type)}/t${++txn}`, content);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

export function text(user: Client, roomId: string, body: string): Promise<string> {
  return send(user, roomId, { msgtype: 'm.text', body });
}

export async function putState(
  user: Client,
  roomId: string,
  type: string,
  content: Json,
  stateKey = '',
): Promise<string> {
  const res = await user.put(
    `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`,
    content,
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

export async function post(user: Client, path: string, body: Json = {}): Promise<Json> {
  const res = await user.post(path, body);
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(res.body)}`);
  return res.body;
}

export async function join(user: Client, roomId: string): Promise<void> {
  await post(user, `/_matrix/client/v3/rooms/${enc(roomId)}/join`);
}

export function roomsOf(body: Json, kind: 'join' | 'leave' | 'invite' | 'knock'): Record<string, Json> {
  return ((body.rooms as Json | undefined)?.[kind] as Record<string, Json> | undefined) ?? {};
}

export const joinedRoom = (body: Json, roomId: string): SyncRoom | undefined =>
  roomsOf(body, 'join')[roomId] as unknown as SyncRoom | undefined;

export const leftRoom = (body: Json, roomId: string): SyncRoom | undefined =>
  roomsOf(body, 'leave')[roomId] as unknown as SyncRoom | undefined;

export function mustJoin(body: Json, roomId: string): SyncRoom {
  const room = joinedRoom(body, roomId);
  assert.ok(room, `room ${roomId} in rooms.join: ${JSON.stringify(body.rooms)}`);
  return room;
}

export const bodies = (events: Json[]): string[] =>
  events.filter((e) => e.type === 'm.room.message').map((e) => (e.content as Json).body as string);

export const types = (events: Json[]): string[] => events.map((e) => e.type as string);

export const stateKeys = (events: Json[], type: string): string[] =>
  events
    .filter((e) => e.type === type)
    .map((e) => e.state_key as string)
    .sort();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value (for state that settles asynchronously); fails after `ms`. */
export async function eventually<T>(fn: () => Promise<T | undefined | false>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail('condition not reached in time');
    await sleep(25);
  }
}

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkEvents(where: string, batch: unknown, check?: (e: Json, where: string) => void): void {
  assert.ok(isObj(batch), `${where} is an object`);
  assert.ok(Array.isArray(batch.events), `${where}.events is an array`);
  for (const [i, e] of (batch.events as unknown[]).entries()) {
    assert.ok(isObj(e), `${where}.events[${i}] is an object`);
    assert.equal(typeof e.type, 'string', `${where}.events[${i}].type`);
    assert.ok(isObj(e.content), `${where}.events[${i}].content`);
    check?.(e, `${where}.events[${i}]`);
  }
}

/** ClientEventWithoutRoomID (definitions/client_event_without_room_id.yaml). */
function clientEventNoRoom(e: Json, where: string): void {
  for (const k of ['event_id', 'sender'] as const) assert.equal(typeof e[k], 'string', `${where}.${k}`);
  assert.equal(typeof e.origin_server_ts, 'number', `${where}.origin_server_ts`);
  assert.equal(e.room_id, undefined, `${where} has no room_id`);
}

function stateEvent(e: Json, where: string): void {
  clientEventNoRoom(e, where);
  assert.equal(typeof e.state_key, 'string', `${where}.state_key`);
}

function stripped(e: Json, where: string): void {
  assert.equal(typeof e.state_key, 'string', `${where}.state_key`);
  assert.equal(typeof e.sender, 'string', `${where}.sender`);
}

/**
 * Checks a /sync response against data/api/client-server/sync.yaml: `next_batch` is required; every present
 * section has its required keys and event shapes (timeline events/limited, state batches, stripped state, …).
 */
export function assertSyncShape(body: Json, opts: { stateAfter?: boolean } = {}): void {
  assert.equal(typeof body.next_batch, 'string', 'next_batch is required');
  for (const k of ['account_data', 'presence', 'to_device'] as const)
    if (body[k] !== undefined) checkEvents(k, body[k]);
  for (const e of ((body.presence as Json | undefined)?.events as Json[] | undefined) ?? [])
    assert.equal(typeof e.sender, 'string', 'presence event sender');
  const rooms = body.rooms;
  if (rooms === undefined) return;
  assert.ok(isObj(rooms));
  for (const [kind, map] of Object.entries(rooms)) {
    assert.ok(['join', 'invite', 'knock', 'leave'].includes(kind), `rooms.${kind} is a known section`);
    assert.ok(isObj(map));
    for (const [roomId, room] of Object.entries(map)) {
      const where = `rooms.${kind}[${roomId}]`;
      assert.ok(roomId.startsWith('!'), `${where} is keyed by room id`);
      assert.ok(isObj(room), where);
      if (kind === 'invite') {
        checkEvents(`${where}.invite_state`, room.invite_state, stripped);
        continue;
      }
      if (kind === 'knock') {
        checkEvents(`${where}.knock_state`, room.knock_state, stripped);
        continue;
      }
      assert.ok(isObj(room.timeline), `${where}.timeline`);
      checkEvents(`${where}.timeline`, room.timeline, clientEventNoRoom);
      assert.equal(typeof room.timeline.limited, 'boolean', `${where}.timeline.limited`);
      if (room.timeline.prev_batch !== undefined)
        assert.equal(typeof room.timeline.prev_batch, 'string', `${where}.timeline.prev_batch`);
      if (opts.stateAfter) {
        assert.equal(room.state, undefined, `${where}.state is omitted with use_state_after`);
        checkEvents(`${where}.state_after`, room.state_after, stateEvent);
      } else {
        assert.equal(room.state_after, undefined, `${where}.state_after only with use_state_after`);
        if (room.state !== undefined) checkEvents(`${where}.state`, room.state, stateEvent);
      }
      if (room.account_data !== undefined) checkEvents(`${where}.account_data`, room.account_data);
      if (kind === 'join') {
        if (room.ephemeral !== undefined) checkEvents(`${where}.ephemeral`, room.ephemeral);
        if (room.summary !== undefined) {
          assert.ok(isObj(room.summary));
          const s = room.summary;
          if (s['m.heroes'] !== undefined) assert.ok(Array.isArray(s['m.heroes']));
          for (const k of ['m.joined_member_count', 'm.invited_member_count'])
            if (s[k] !== undefined) assert.equal(typeof s[k], 'number', `${where}.summary.${k}`);
        }
        const un = room.unread_notifications;
        if (un !== undefined) {
          assert.ok(isObj(un));
          for (const k of ['notification_count', 'highlight_count'])
            if (un[k] !== undefined)
              assert.equal(typeof un[k], 'number', `${where}.unread_notifications.${k}`);
        }
      }
    }
  }
}
