/**
 * GET /_matrix/client/v3/notifications: the events the user was (or would have been) notified about, newest first.
 * Built like the unread counts: the user's push rules evaluated over recent events from others in the rooms they
 * are joined to, sent since their join and visible to them. A request scans at most {@link SCAN_LIMIT} events;
 * `next_token` (a stream position, exclusive) continues below the last event returned or scanned.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { loadPushRules } from '../../push/rules-store.js';
import { evaluateForUser, loadRoomPushFacts, type RoomPushFacts } from '../../push/room-push.js';
import { clientEvent } from '../../read/event-reader.js';
import { filterVisible } from '../../read/visibility.js';
import { withoutIgnored } from '../../sync/ignored.js';
import type { ApiDeps } from '../context.js';
import { requester } from '../auth.js';
import { invalidParam } from '../errors.js';
import { parseQuery } from '../validate.js';

const SCAN_LIMIT = 1000;
const BATCH = 200;

const Query = z.object({
  from: z.string().optional(),
  limit: z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .transform((n) => Math.min(n ?? 50, 1000)),
  only: z.string().optional(),
});

export function notificationsRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'storage' | 'auth' | 'reader'>,
): void {
  const { storage, reader } = deps;
  const { db } = storage;

  app.get('/_matrix/client/v3/notifications', { preHandler: deps.auth.requireUser }, async (req) => {
    const { userId } = requester(req);
    const q = parseQuery(Query, req.query);
    let upper = storage.stream.current + 1;
    if (q.from !== undefined) {
      if (!/^\d+$/.test(q.from)) throw invalidParam('Invalid from token');
      upper = Math.min(Number(q.from), upper);
    }
    const onlyHighlight = q.only === 'highlight';

    const joined = await db
      .selectFrom('room_members')
      .select(['room_nid', 'stream_ordering'])
      .where('user_id', '=', userId)
      .where('membership', '=', 'join')
      .execute();
    if (joined.length === 0 || q.limit === 0) return { notifications: [] };
    const joinedAt = new Map(joined.map((m) => [Number(m.room_nid), Number(m.stream_ordering)]));
    const receiptRows = await db
      .selectFrom('receipts as r')
      .innerJoin('events as e', 'e.event_id', 'r.event_id')
      .select(['r.room_nid', (eb) => eb.fn.max('e.stream_ordering').as('pos')])
      .where('r.user_id', '=', userId)
      .where('r.receipt_type', 'in', ['m.read', 'm.read.private'])
      .where('r.thread_id', 'in', ['', 'main'])
      .groupBy('r.room_nid')
      .execute();
    const readUpTo = new Map(receiptRows.map((r) => [Number(r.room_nid), Number(r.pos ?? 0)]));
    const minJoin = Math.min(...joinedAt.values());

    const rules = await loadPushRules(storage, userId);
    const facts = new Map<number, Promise<RoomPushFacts>>();
    const factsOf = (roomNid: number) => {
      let f = facts.get(roomNid);
      if (!f) {
        f = loadRoomPushFacts(db, reader, roomNid, [userId]);
        facts.set(roomNid, f);
      }
      return f;
    };

    const notifications: Record<string, unknown>[] = [];
    let scanned = 0;
    let cursor = upper;
    let exhausted = false;
    let nextToken: number | undefined;
    while (notifications.length < q.limit) {
      if (scanned >= SCAN_LIMIT) {
        nextToken = cursor;
        break;
      }
      const rows = await db
        .selectFrom('events')
        .select(['event_nid', 'room_nid', 'stream_ordering'])
        .where('room_nid', 'in', [...joinedAt.keys()])
        .where('stream_ordering', '<', cursor)
        .where('stream_ordering', '>', minJoin)
        .where('sender', '!=', userId)
        .orderBy('stream_ordering', 'desc')
        .limit(BATCH)
        .execute();
      if (rows.length === 0) {
        exhausted = true;
        break;
      }
      scanned += rows.length;
      cursor = Number(rows[rows.length - 1]!.stream_ordering);
      const candidates = rows
        .filter((r) => Number(r.stream_ordering) > (joinedAt.get(Number(r.room_nid)) ?? Infinity))
        .map((r) => Number(r.event_nid));
      const events = await withoutIgnored(
        db,
        userId,
        await filterVisible({ reader, db }, userId, await reader.listByNids(candidates)),
      );
      for (const ev of events) {
        const outcome = evaluateForUser(ev, userId, rules, await factsOf(ev.roomNid));
        if (!outcome?.notify || (onlyHighlight && !outcome.highlight)) continue;
        notifications.push({
          actions: outcome.actions,
          event: clientEvent(ev),
          read: (ev.streamOrdering ?? 0) <= (readUpTo.get(ev.roomNid) ?? 0),
          room_id: ev.roomId,
          ts: ev.pdu.origin_server_ts,
        });
        if (notifications.length >= q.limit) {
          nextToken = ev.streamOrdering ?? cursor;
          break;
        }
      }
      if (rows.length < BATCH) {
        exhausted = notifications.length < q.limit;
        break;
      }
    }
    if (exhausted) nextToken = undefined;
    return nextToken === undefined ? { notifications } : { notifications, next_token: String(nextToken) };
  });
}
