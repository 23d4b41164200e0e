/** Shared by the integrity tests: damage applied with SQL to a stopped server, doctor runs, timeline reads. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { stringify } from 'yaml';
import { runDoctor, type DoctorOptions, type DoctorReport } from '../../src/integrity/doctor.js';
import { openStorage } from '../../src/storage/db.js';
import type { Database } from '../../src/storage/schema.js';
import type { Client, Json, TestServer } from '../helpers/server.js';

export { damage } from '../helpers/damage.js';

export const enc = encodeURIComponent;

/** The doctor on the stopped server's database. */
export async function doctor(server: TestServer, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const storage = await openStorage(server.db.config);
  try {
    return await runDoctor(storage, opts);
  } finally {
    await storage.close();
  }
}

/** A homeserver.yaml for the CLI, pointing at the test server's database and data directory. */
export function writeConfig(server: TestServer, extra: Json = {}): string {
  const path = join(server.dataDir, 'homeserver.yaml');
  writeFileSync(
    path,
    stringify({
      server_name: server.serverName,
      listeners: [{ port: 0, bind_addresses: ['127.0.0.1'] }],
      database: server.db.config,
      signing_key_path: join(server.dataDir, 'signing.key'),
      media_store_path: join(server.dataDir, 'media'),
      log_level: 'silent',
      ...extra,
    }),
  );
  return path;
}

export async function sendText(user: Client, roomId: string, body: string, txnId = body): Promise<string> {
  const res = await user.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${enc(txnId)}`, {
    msgtype: 'm.text',
    body,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

export async function setState(
  user: Client,
  roomId: string,
  type: string,
  content: Json,
  key = '',
): Promise<string> {
  const res = await user.put(
    `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(key)}`,
    content,
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

/** Every event of the room through /messages, oldest first. */
export async function allMessages(user: Client, roomId: string): Promise<Json[]> {
  const out: Json[] = [];
  let from: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const res = await user.get(
      `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=100${from ? `&from=${enc(from)}` : ''}`,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    out.push(...(res.body.chunk as Json[]));
    if (!res.body.end) break;
    from = res.body.end as string;
  }
  return out.reverse();
}

export const bodies = (events: Json[]): string[] =>
  events.filter((e) => e.type === 'm.room.message').map((e) => (e.content as Json).body as string);

/** Message bodies of a room in an initial /sync (timeline limit 100). */
export async function syncBodies(user: Client, roomId: string): Promise<string[]> {
  const filter = enc(JSON.stringify({ room: { timeline: { limit: 100 } } }));
  const res = await user.get(`/_matrix/client/v3/sync?filter=${filter}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const join = (res.body.rooms as Json).join as Record<string, { timeline: { events: Json[] } }>;
  return bodies(join[roomId]?.timeline.events ?? []);
}

export async function createRoom(user: Client): Promise<string> {
  const res = await user.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

export async function nidOf(
  db: Kysely<Database>,
  eventId: string,
): Promise<{ nid: number; snap: number | null; so: number | null }> {
  const r = await db
    .selectFrom('events')
    .select(['event_nid', 'state_snapshot_nid', 'stream_ordering'])
    .where('event_id', '=', eventId)
    .executeTakeFirstOrThrow();
  return {
    nid: Number(r.event_nid),
    snap: r.state_snapshot_nid === null ? null : Number(r.state_snapshot_nid),
    so: r.stream_ordering === null ? null : Number(r.stream_ordering),
  };
}

export async function roomNid(db: Kysely<Database>, roomId: string): Promise<number> {
  const r = await db
    .selectFrom('rooms')
    .select('room_nid')
    .where('room_id', '=', roomId)
    .executeTakeFirstOrThrow();
  return Number(r.room_nid);
}

/** The event `userId`'s m.read receipt (unthreaded) in a room points at, from an initial /sync of `user`. */
export async function readReceiptOf(
  user: Client,
  roomId: string,
  userId: string,
): Promise<string | undefined> {
  const filter = enc(JSON.stringify({ room: { rooms: [roomId], timeline: { limit: 1 } } }));
  const res = await user.get(`/_matrix/client/v3/sync?filter=${filter}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const join = (res.body.rooms as Json | undefined)?.join as Record<
    string,
    { ephemeral?: { events: Json[] } }
  >;
  for (const e of join?.[roomId]?.ephemeral?.events ?? []) {
    if (e.type !== 'm.receipt') continue;
    for (const [eventId, byType] of Object.entries(e.content as Record<string, Record<string, Json>>)) {
      const reader = byType['m.read']?.[userId] as Json | undefined;
      if (reader && reader.thread_id === undefined) return eventId;
    }
  }
  return undefined;
}
