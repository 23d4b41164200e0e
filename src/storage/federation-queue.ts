/**
 * The outbound federation queue (fan-out position, per-destination outbox, retry state) and the inbound
 * transaction dedupe. See migration 0013 for the design.
 */
import { sql } from 'kysely';
import { usersSharingRoomWith } from './presence.js';
import type { Executor } from './users.js';

export interface OutboxRow {
  id: number;
  destination: string;
  event_nid: number | null;
  room_nid: number | null;
  edu_type: string | null;
  edu_content: string | null;
}

export type NewOutboxRow = Omit<OutboxRow, 'id'>;

export interface DestinationState {
  destination: string;
  failureCount: number;
  retryLastTs: number;
  retryIntervalMs: number;
  lastSuccessTs: number | null;
}

/** The stream position up to which rows were fanned out, or undefined before the first fan-out. */
export async function getSenderPosition(db: Executor): Promise<number | undefined> {
  const row = await db
    .selectFrom('federation_sender_position')
    .select('stream_pos')
    .where('id', '=', 1)
    .executeTakeFirst();
  return row ? Number(row.stream_pos) : undefined;
}

export async function setSenderPosition(db: Executor, pos: number): Promise<void> {
  await db
    .insertInto('federation_sender_position')
    .values({ id: 1, stream_pos: pos })
    .onConflict((oc) => oc.column('id').doUpdateSet({ stream_pos: pos }))
    .execute();
}

/**
 * Counts writes that may give the federation fan-out work other than local events in rooms no other server is in:
 * outbox rows (to-device to other servers' users), other servers' events, joins over federation, repairs. Every
 * such write notes itself here after its stream position is allocated and before it is finished; the fan-out
 * (federation/sender/fanout.ts) skips its reads while no server but this one is in any room and nothing was noted.
 * Per process (several servers in one process only make each other read more).
 */
let remoteWrites = 0;

export function noteRemoteWrite(): void {
  remoteWrites++;
}

export function remoteWriteCount(): number {
  return remoteWrites;
}

/** Whether any user of another server is joined to any room (one indexed scan; the fan-out asks rarely). */
export async function anyRemoteMemberJoined(db: Executor, serverName: string): Promise<boolean> {
  const suffix = `:${serverName}`;
  const row = await db
    .selectFrom('room_members')
    .select('user_id')
    .where('membership', '=', 'join')
    .where(
      (eb) => eb.fn('substr', ['user_id', sql<number>`length(user_id) - ${suffix.length - 1}`]),
      '!=',
      suffix,
    )
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

export async function insertOutboxRows(
  db: Executor,
  rows: readonly NewOutboxRow[],
  now: number,
): Promise<void> {
  if (rows.length) noteRemoteWrite();
  for (let i = 0; i < rows.length; i += 200) {
    await db
      .insertInto('federation_outbox')
      .values(rows.slice(i, i + 200).map((r) => ({ ...r, created_ts: now })))
      .execute();
  }
}

/** Destinations of outbox rows with an id above `afterId`, and the highest id. */
export async function outboxAddedSince(
  db: Executor,
  afterId: number,
): Promise<{ destinations: string[]; maxId: number }> {
  const rows = await db
    .selectFrom('federation_outbox')
    .select(['destination', (eb) => eb.fn.max('id').as('m')])
    .where('id', '>', afterId)
    .groupBy('destination')
    .execute();
  let maxId = afterId;
  for (const r of rows) maxId = Math.max(maxId, Number(r.m));
  return { destinations: rows.map((r) => r.destination), maxId };
}

/** Destinations with something queued. */
export async function destinationsWithOutbox(db: Executor): Promise<string[]> {
  const rows = await db.selectFrom('federation_outbox').select('destination').distinct().execute();
  return rows.map((r) => r.destination);
}

function toOutbox(r: {
  id: number;
  destination: string;
  event_nid: number | null;
  room_nid: number | null;
  edu_type: string | null;
  edu_content: string | null;
}): OutboxRow {
  return {
    id: Number(r.id),
    destination: r.destination,
    event_nid: r.event_nid === null ? null : Number(r.event_nid),
    room_nid: r.room_nid === null ? null : Number(r.room_nid),
    edu_type: r.edu_type,
    edu_content: r.edu_content,
  };
}

/** The oldest queued PDU rows and EDU rows of a destination, at most `pdus` and `edus` of each, in queue order. */
export async function outboxBatch(
  db: Executor,
  destination: string,
  pdus: number,
  edus: number,
): Promise<{ pdus: OutboxRow[]; edus: OutboxRow[] }> {
  const cols = ['id', 'destination', 'event_nid', 'room_nid', 'edu_type', 'edu_content'] as const;
  const pduRows = await db
    .selectFrom('federation_outbox')
    .select(cols)
    .where('destination', '=', destination)
    .where('event_nid', 'is not', null)
    .orderBy('id')
    .limit(pdus)
    .execute();
  const eduRows = await db
    .selectFrom('federation_outbox')
    .select(cols)
    .where('destination', '=', destination)
    .where('event_nid', 'is', null)
    .orderBy('id')
    .limit(edus)
    .execute();
  return { pdus: pduRows.map(toOutbox), edus: eduRows.map(toOutbox) };
}

export async function deleteOutboxRows(db: Executor, ids: readonly number[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 500) {
    await db
      .deleteFrom('federation_outbox')
      .where('id', 'in', ids.slice(i, i + 500))
      .execute();
  }
}

/** Queued PDU rows per destination. */
export async function outboxDepths(db: Executor): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom('federation_outbox')
    .select(['destination', (eb) => eb.fn.countAll<number>().as('n')])
    .where('event_nid', 'is not', null)
    .groupBy('destination')
    .execute();
  return new Map(rows.map((r) => [r.destination, Number(r.n)]));
}

export async function countQueuedPdus(db: Executor, destination: string): Promise<number> {
  const row = await db
    .selectFrom('federation_outbox')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('destination', '=', destination)
    .where('event_nid', 'is not', null)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/**
 * Catch-up: keeps only the newest queued PDU of each room for the destination (the remote fetches the gap with
 * get_missing_events). Returns how many rows were dropped.
 */
export async function collapseToLatestPerRoom(db: Executor, destination: string): Promise<number> {
  const latest = await db
    .selectFrom('federation_outbox')
    .select(['room_nid', (eb) => eb.fn.max('id').as('id')])
    .where('destination', '=', destination)
    .where('event_nid', 'is not', null)
    .groupBy('room_nid')
    .execute();
  const keep = latest.map((r) => Number(r.id));
  if (keep.length === 0) return 0;
  let q = db
    .deleteFrom('federation_outbox')
    .where('destination', '=', destination)
    .where('event_nid', 'is not', null);
  // One statement when the room count is modest; otherwise per room.
  if (keep.length <= 500) {
    q = q.where('id', 'not in', keep);
    const res = await q.executeTakeFirst();
    return Number(res.numDeletedRows);
  }
  let dropped = 0;
  for (const r of latest) {
    const res = await db
      .deleteFrom('federation_outbox')
      .where('destination', '=', destination)
      .where('room_nid', '=', r.room_nid)
      .where('event_nid', 'is not', null)
      .where('id', '<', Number(r.id))
      .executeTakeFirst();
    dropped += Number(res.numDeletedRows);
  }
  return dropped;
}

export async function getDestination(
  db: Executor,
  destination: string,
): Promise<DestinationState | undefined> {
  const r = await db
    .selectFrom('federation_destinations')
    .selectAll()
    .where('destination', '=', destination)
    .executeTakeFirst();
  if (!r) return undefined;
  return {
    destination: r.destination,
    failureCount: Number(r.failure_count),
    retryLastTs: Number(r.retry_last_ts),
    retryIntervalMs: Number(r.retry_interval_ms),
    lastSuccessTs: r.last_success_ts === null ? null : Number(r.last_success_ts),
  };
}

export async function putDestination(db: Executor, s: DestinationState): Promise<void> {
  const values = {
    destination: s.destination,
    failure_count: s.failureCount,
    retry_last_ts: s.retryLastTs,
    retry_interval_ms: s.retryIntervalMs,
    last_success_ts: s.lastSuccessTs,
  };
  await db
    .insertInto('federation_destinations')
    .values(values)
    .onConflict((oc) =>
      oc.column('destination').doUpdateSet({
        failure_count: values.failure_count,
        retry_last_ts: values.retry_last_ts,
        retry_interval_ms: values.retry_interval_ms,
        last_success_ts: values.last_success_ts,
      }),
    )
    .execute();
}

/** The stored answer to a transaction already received from `origin`, or undefined. */
export async function getReceivedTxn(
  db: Executor,
  origin: string,
  txnId: string,
): Promise<string | undefined> {
  const row = await db
    .selectFrom('federation_received_txns')
    .select('response')
    .where('origin', '=', origin)
    .where('txn_id', '=', txnId)
    .executeTakeFirst();
  return row?.response;
}

export async function putReceivedTxn(
  db: Executor,
  origin: string,
  txnId: string,
  response: string,
  now: number,
): Promise<void> {
  await db
    .insertInto('federation_received_txns')
    .values({ origin, txn_id: txnId, response, received_ts: now })
    .onConflict((oc) => oc.columns(['origin', 'txn_id']).doNothing())
    .execute();
}

/** Records a to-device EDU's message id; false when it was delivered before. */
export async function recordReceivedToDevice(
  db: Executor,
  sender: string,
  messageId: string,
  now: number,
): Promise<boolean> {
  const res = await db
    .insertInto('federation_received_to_device')
    .values({ sender, message_id: messageId, received_ts: now })
    .onConflict((oc) => oc.columns(['sender', 'message_id']).doNothing())
    .executeTakeFirst();
  return Number(res.numInsertedOrUpdatedRows ?? 0) > 0;
}

/**
 * Forgets received transactions and to-device message ids older than `before` (a sender retries within minutes,
 * well inside the day Synapse keeps them).
 */
export async function pruneReceivedTxns(db: Executor, before: number): Promise<void> {
  await db.deleteFrom('federation_received_txns').where('received_ts', '<', before).execute();
  await db.deleteFrom('federation_received_to_device').where('received_ts', '<', before).execute();
}

export interface FanoutEvent {
  event_nid: number;
  event_id: string;
  room_nid: number;
  stream_ordering: number;
  type: string;
  state_key: string | null;
  sender: string;
  state_snapshot_nid: number | null;
  json: string;
}

/** Non-outlier events with `after < stream_ordering <= to`, in stream order, at most `limit`. */
export async function eventsInRange(
  db: Executor,
  after: number,
  to: number,
  limit: number,
): Promise<FanoutEvent[]> {
  const rows = await db
    .selectFrom('events')
    .select([
      'event_nid',
      'event_id',
      'room_nid',
      'stream_ordering',
      'type',
      'state_key',
      'sender',
      'state_snapshot_nid',
      'json',
    ])
    .where('stream_ordering', '>', after)
    .where('stream_ordering', '<=', to)
    .where('outlier', '=', 0)
    .orderBy('stream_ordering')
    .limit(limit)
    .execute();
  return rows.map((r) => ({
    ...r,
    event_nid: Number(r.event_nid),
    room_nid: Number(r.room_nid),
    stream_ordering: Number(r.stream_ordering),
    state_snapshot_nid: r.state_snapshot_nid === null ? null : Number(r.state_snapshot_nid),
  }));
}

/** Memberships of member events by nid: from room_members when current, else from the event JSON. */
export async function membershipsOf(db: Executor, nids: readonly number[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (let i = 0; i < nids.length; i += 500) {
    const chunk = nids.slice(i, i + 500);
    const current = await db
      .selectFrom('room_members')
      .select(['event_nid', 'membership'])
      .where('event_nid', 'in', chunk)
      .execute();
    for (const r of current) out.set(Number(r.event_nid), r.membership);
    const rest = chunk.filter((n) => !out.has(n));
    if (rest.length === 0) continue;
    const rows = await db
      .selectFrom('events')
      .select(['event_nid', 'json'])
      .where('event_nid', 'in', rest)
      .execute();
    for (const r of rows) {
      try {
        const m = (JSON.parse(r.json) as { content?: { membership?: unknown } }).content?.membership;
        if (typeof m === 'string') out.set(Number(r.event_nid), m);
      } catch {
        // unreadable JSON: the member counts as not joined
      }
    }
  }
  return out;
}

export interface ChangedReceipt {
  room_nid: number;
  room_id: string;
  user_id: string;
  receipt_type: string;
  thread_id: string;
  event_id: string;
  data: string;
}

/** Public (m.read) receipts stamped in (after, to], with their room ids. */
export async function receiptsStampedIn(db: Executor, after: number, to: number): Promise<ChangedReceipt[]> {
  const rows = await db
    .selectFrom('receipts as r')
    .innerJoin('rooms as m', 'm.room_nid', 'r.room_nid')
    .select(['r.room_nid', 'm.room_id', 'r.user_id', 'r.receipt_type', 'r.thread_id', 'r.event_id', 'r.data'])
    .where('r.stream_pos', '>', after)
    .where('r.stream_pos', '<=', to)
    .where('r.receipt_type', '=', 'm.read')
    .orderBy('r.stream_pos')
    .execute();
  return rows.map((r) => ({ ...r, room_nid: Number(r.room_nid) }));
}

/** Presence rows stamped in (after, to]. */
export async function presenceStampedIn(
  db: Executor,
  after: number,
  to: number,
): Promise<
  {
    user_id: string;
    state: string;
    status_msg: string | null;
    last_active_ts: number;
    currently_active: number;
  }[]
> {
  const rows = await db
    .selectFrom('presence')
    .select(['user_id', 'state', 'status_msg', 'last_active_ts', 'currently_active'])
    .where('stream_pos', '>', after)
    .where('stream_pos', '<=', to)
    .orderBy('stream_pos')
    .execute();
  return rows.map((r) => ({
    ...r,
    last_active_ts: Number(r.last_active_ts),
    currently_active: Number(r.currently_active),
  }));
}

/** Users whose devices or cross-signing keys changed in (after, to], visible to others (not only_self). */
export async function deviceListChangesIn(
  db: Executor,
  after: number,
  to: number,
): Promise<{ user_id: string; stream_pos: number }[]> {
  const rows = await db
    .selectFrom('device_list_changes')
    .select(['user_id', 'stream_pos'])
    .where('stream_pos', '>', after)
    .where('stream_pos', '<=', to)
    .where('only_self', '=', 0)
    .orderBy('stream_pos')
    .execute();
  return rows.map((r) => ({ user_id: r.user_id, stream_pos: Number(r.stream_pos) }));
}

/** Servers (this one included) with a joined member in any room where `userId` is joined. */
export async function serversSharingRoomWith(db: Executor, userId: string): Promise<Set<string>> {
  const users = await usersSharingRoomWith(db, userId);
  return new Set(users.map((u) => u.slice(u.indexOf(':') + 1)));
}

/** Servers with a joined member in the room now, by room id (none for an unknown room). */
export async function joinedServersOfRoom(db: Executor, roomId: string): Promise<Set<string>> {
  const room = await db
    .selectFrom('rooms')
    .select('room_nid')
    .where('room_id', '=', roomId)
    .executeTakeFirst();
  return room ? joinedServersOf(db, Number(room.room_nid)) : new Set();
}

/** Servers with a joined member in the room now. */
export async function joinedServersOf(db: Executor, roomNid: number): Promise<Set<string>> {
  const rows = await db
    .selectFrom('room_members')
    .select('user_id')
    .where('room_nid', '=', roomNid)
    .where('membership', '=', 'join')
    .execute();
  const out = new Set<string>();
  for (const r of rows) out.add(r.user_id.slice(r.user_id.indexOf(':') + 1));
  return out;
}

/** The room's nid and the user's membership there (undefined membership when none). */
export async function roomMembership(
  db: Executor,
  roomId: string,
  userId: string,
): Promise<{ roomNid: number; membership: string | undefined } | undefined> {
  const room = await db
    .selectFrom('rooms')
    .select('room_nid')
    .where('room_id', '=', roomId)
    .executeTakeFirst();
  if (!room) return undefined;
  const m = await db
    .selectFrom('room_members')
    .select('membership')
    .where('room_nid', '=', room.room_nid)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return { roomNid: Number(room.room_nid), membership: m?.membership };
}

/** The stream position of the user's latest device-list change (0 when none): `stream_id` of /user/devices. */
export async function latestDeviceListChange(db: Executor, userId: string): Promise<number> {
  const row = await db
    .selectFrom('device_list_changes')
    .select((eb) => eb.fn.max('stream_pos').as('m'))
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return Number(row?.m ?? 0);
}

/**
 * Marks an event this server persists on behalf of `origin` (send_join, send_leave, send_knock): once committed,
 * the fan-out relays it to the room's other servers. Call it before persisting the event.
 */
export async function markSendOnBehalf(db: Executor, eventId: string, origin: string): Promise<void> {
  await db
    .insertInto('federation_send_on_behalf')
    .values({ event_id: eventId, origin, created_ts: Date.now() })
    .onConflict((oc) => oc.column('event_id').doNothing())
    .execute();
}

/** The origins of the given events that were persisted on another server's behalf. */
export async function sendOnBehalfOf(
  db: Executor,
  eventIds: readonly string[],
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < eventIds.length; i += 500) {
    const rows = await db
      .selectFrom('federation_send_on_behalf')
      .select(['event_id', 'origin'])
      .where('event_id', 'in', eventIds.slice(i, i + 500))
      .execute();
    for (const r of rows) out.set(r.event_id, r.origin);
  }
  return out;
}
