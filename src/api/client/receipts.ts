/** Receipts and read markers (client-server API "Receipts", "Read and unread markers"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { isValidRoomId } from '../../rooms/identifiers.js';
import type { Storage } from '../../storage/db.js';
import { getEventRowById } from '../../storage/events.js';
import { isInThread, putReceiptIfNewer, threadOfEvent } from '../../storage/receipts.js';
import type { Notifier } from '../../sync/notifier.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { invalidParam, notFound } from '../errors.js';
import { parseBody, parseParams } from '../validate.js';
import { readAccountData, writeAccountData } from './account-data.js';
import { requireJoined } from './typing.js';

export const RECEIPT_TYPES = ['m.read', 'm.read.private', 'm.fully_read'] as const;
export type ReceiptType = (typeof RECEIPT_TYPES)[number];
const MAIN_THREAD = 'main';

const ReceiptParams = z.object({ roomId: z.string(), receiptType: z.string(), eventId: z.string() });
const ReceiptBody = z.looseObject({ thread_id: z.unknown().optional() });
const RoomParams = z.object({ roomId: z.string() });
const MarkersBody = z.looseObject({
  'm.fully_read': z.string().optional(),
  'm.read': z.string().optional(),
  'm.read.private': z.string().optional(),
});

type Deps = { storage: Pick<Storage, 'db' | 'stream'>; notifier: Notifier };

/** The stream ordering of an event of the room, or undefined when the server does not know it there. */
async function orderingIn(deps: Deps, roomNid: number, eventId: string): Promise<number | undefined> {
  const row = await getEventRowById(deps.storage.db, eventId);
  if (!row || Number(row.room_nid) !== roomNid || row.stream_ordering === null) return undefined;
  return Number(row.stream_ordering);
}

/**
 * Records an m.read or m.read.private receipt and wakes the room. As in Synapse, a receipt for an event the
 * server does not know in this room is accepted and ignored, and one for an earlier event than the user's
 * current receipt of that type and thread is ignored (receipts only move forward).
 */
export async function sendReceipt(
  deps: Deps,
  roomId: string,
  roomNid: number,
  userId: string,
  receiptType: 'm.read' | 'm.read.private',
  eventId: string,
  threadId: string | undefined,
): Promise<void> {
  const ordering = await orderingIn(deps, roomNid, eventId);
  if (ordering === undefined) return;
  const row = {
    roomNid,
    userId,
    receiptType,
    threadId: threadId ?? '',
    eventId,
    data: JSON.stringify({ ts: Date.now() }),
  };
  const stored = await deps.storage.stream.withPosition((pos) =>
    deps.storage.db.transaction().execute((trx) => putReceiptIfNewer(trx, row, ordering, pos)),
  );
  if (stored) deps.notifier.notifyRooms([roomId]);
}

/**
 * Moves the user's m.fully_read marker (room account data) to `eventId`, which must be an event of the room
 * (404 otherwise, as Synapse). An earlier event than the current marker leaves it where it is.
 */
export async function setFullyRead(
  deps: Deps,
  roomId: string,
  roomNid: number,
  userId: string,
  eventId: string,
): Promise<void> {
  const ordering = await orderingIn(deps, roomNid, eventId);
  if (ordering === undefined) throw notFound(`Could not find event ${eventId}`);
  const current = await readAccountData(deps.storage, userId, roomId, 'm.fully_read');
  if (typeof current?.event_id === 'string') {
    const was = await orderingIn(deps, roomNid, current.event_id);
    if (was !== undefined && was >= ordering) return;
  }
  await writeAccountData(deps, userId, roomId, 'm.fully_read', { event_id: eventId });
}

/** The body's thread_id, checked as Synapse does: absent, or a non-empty string and not for m.fully_read. */
function threadIdOf(body: { thread_id?: unknown }, receiptType: ReceiptType): string | undefined {
  if (body.thread_id === undefined) return undefined;
  const threadId = body.thread_id;
  if (typeof threadId !== 'string' || threadId === '') {
    throw invalidParam('thread_id field must be a non-empty string');
  }
  if (receiptType === 'm.fully_read') {
    throw invalidParam('thread_id is not compatible with m.fully_read receipts.');
  }
  return threadId;
}

/** 400 unless the event is in the thread: a thread's root or event, or for `main` an event of no thread. */
async function checkInThread(deps: Deps, eventId: string, threadId: string): Promise<void> {
  const related =
    threadId === MAIN_THREAD
      ? !(await isInThread(deps.storage.db, eventId))
      : eventId === threadId || (await threadOfEvent(deps.storage.db, eventId)) === threadId;
  if (!related) throw invalidParam('event_id is not related to thread_id');
}

export function receiptRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'storage' | 'auth' | 'notifier' | 'writer'>,
): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId} */
  app.post('/_matrix/client/v3/rooms/:roomId/receipt/:receiptType/:eventId', guard, async (req) => {
    const { roomId, receiptType, eventId } = parseParams(ReceiptParams, req.params);
    const body = parseBody(ReceiptBody, req.body);
    if (!isValidRoomId(roomId) || !eventId.startsWith('$')) {
      throw invalidParam('A valid room ID and event ID must be specified');
    }
    if (!(RECEIPT_TYPES as readonly string[]).includes(receiptType)) {
      throw invalidParam(`Receipt type must be one of ${RECEIPT_TYPES.join(', ')}`);
    }
    const type = receiptType as ReceiptType;
    const threadId = threadIdOf(body, type);
    const userId = requester(req).userId;
    const roomNid = await requireJoined(deps.writer, roomId, userId);
    if (threadId !== undefined) await checkInThread(deps, eventId, threadId);
    if (type === 'm.fully_read') await setFullyRead(deps, roomId, roomNid, userId, eventId);
    else await sendReceipt(deps, roomId, roomNid, userId, type, eventId, threadId);
    return {};
  });

  /** POST /_matrix/client/v3/rooms/{roomId}/read_markers */
  app.post('/_matrix/client/v3/rooms/:roomId/read_markers', guard, async (req) => {
    const { roomId } = parseParams(RoomParams, req.params);
    const body = parseBody(MarkersBody, req.body);
    const userId = requester(req).userId;
    const roomNid = await requireJoined(deps.writer, roomId, userId);
    const fullyRead = body['m.fully_read'];
    if (fullyRead) await setFullyRead(deps, roomId, roomNid, userId, fullyRead);
    for (const type of ['m.read', 'm.read.private'] as const) {
      const eventId = body[type];
      if (eventId) await sendReceipt(deps, roomId, roomNid, userId, type, eventId, undefined);
    }
    return {};
  });
}
