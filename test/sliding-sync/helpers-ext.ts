/** Small helpers for the sliding sync extension tests: one request of a connection, and the room setup. */
import type { Client, Json } from '../helpers/server.js';

export const SLIDING_PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';

export type User = Client & { userId: string; deviceId: string };

export async function ok(p: Promise<{ status: number; body: Json }>): Promise<Json> {
  const res = await p;
  if (res.status !== 200) throw new Error(`expected 200, got ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** One sliding sync request: `pos` (absent: initial) and `timeout` go in the query string, as clients send them. */
export function slide(user: Client, body: Json, pos?: string, timeoutMs = 0) {
  const q = pos === undefined ? '' : `?pos=${encodeURIComponent(pos)}&timeout=${timeoutMs}`;
  return user.post(SLIDING_PATH + q, body);
}

export const ext = (body: Json, name: string): Json => (body.extensions as Json)[name] as Json;

export async function createRoom(user: Client, body: Json = {}): Promise<string> {
  return (await ok(user.post('/_matrix/client/v3/createRoom', body))).room_id as string;
}

export async function join(user: Client, roomId: string): Promise<void> {
  await ok(user.post(`/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}));
}

let txn = 0;
export async function say(user: Client, roomId: string, text: string): Promise<string> {
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/x${++txn}`;
  return (await ok(user.put(path, { msgtype: 'm.text', body: text }))).event_id as string;
}
