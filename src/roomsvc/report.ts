/**
 * Reporting content (client-server API "Reporting content"). An event may be reported by a user who can see it
 * (Synapse fetches it through the history-visibility filter): the same 404 answers an unknown event and one the
 * reporter may not see. Rooms may be reported by anyone, as long as this server knows them.
 */
import { MatrixError } from '../api/errors.js';
import { lookupIn } from '../input/room-head.js';
import type { RoomWriter } from '../input/room-writer.js';
import type { EventReader, LoadedEvent } from '../read/event-reader.js';
import { membershipOf } from '../rooms/auth/power-levels.js';
import type { Storage } from '../storage/db.js';
import { stateKey } from '../storage/state.js';

export interface ReportDeps {
  storage: Storage;
  writer: RoomWriter;
  reader: EventReader;
}

const notVisible = () =>
  new MatrixError(
    'M_NOT_FOUND',
    'Unable to report event: it does not exist or you aren\u2019t able to see it',
  );

/**
 * History visibility at the event (the state before it; the user's own membership event counts with its own
 * membership): world_readable, joined at the event, invited at the event under `invited`, or `shared` while
 * the user is joined now.
 */
async function canSee(deps: ReportDeps, ev: LoadedEvent, userId: string): Promise<boolean> {
  if (ev.stateSnapshotNid === null) return false;
  const snapshot = await deps.reader.snapshot(ev.stateSnapshotNid, {
    roomId: ev.roomId,
    eventId: ev.eventId,
  });
  if (!snapshot) return false;
  const hvNid = snapshot.get(stateKey('m.room.history_visibility', ''));
  const memberNid = snapshot.get(stateKey('m.room.member', userId));
  const loaded = await deps.reader.byNids([hvNid, memberNid].filter((n): n is number => n !== undefined));
  const hv = hvNid === undefined ? undefined : loaded.get(hvNid)?.pdu.content.history_visibility;
  const visibility = typeof hv === 'string' ? hv : 'shared';
  let membership = memberNid === undefined ? undefined : loaded.get(memberNid)?.pdu.content.membership;
  if (ev.pdu.type === 'm.room.member' && ev.pdu.state_key === userId) membership = ev.pdu.content.membership;
  if (visibility === 'world_readable' || membership === 'join') return true;
  if (visibility === 'invited' && membership === 'invite') return true;
  if (visibility === 'shared') {
    const head = await deps.writer.head(ev.roomId);
    return head !== undefined && membershipOf(userId, lookupIn(head.state)) === 'join';
  }
  return false;
}

/** POST /rooms/{roomId}/report/{eventId} */
export async function reportEvent(
  deps: ReportDeps,
  userId: string,
  roomId: string,
  eventId: string,
  reason: string | undefined,
  score: number | undefined,
): Promise<void> {
  const ev = await deps.reader.byId(eventId);
  if (!ev || ev.roomId !== roomId || !(await canSee(deps, ev, userId))) throw notVisible();
  await deps.storage.db
    .insertInto('event_reports')
    .values({
      room_id: roomId,
      event_id: eventId,
      user_id: userId,
      reason: reason ?? null,
      score: score ?? null,
      received_ts: Date.now(),
    })
    .execute();
}

/** POST /rooms/{roomId}/report */
export async function reportRoom(
  deps: ReportDeps,
  userId: string,
  roomId: string,
  reason: string,
): Promise<void> {
  const room = await deps.storage.db
    .selectFrom('rooms')
    .select('room_id')
    .where('room_id', '=', roomId)
    .executeTakeFirst();
  if (!room) throw new MatrixError('M_NOT_FOUND', 'The room was not found');
  await deps.storage.db
    .insertInto('event_reports')
    .values({
      room_id: roomId,
      event_id: null,
      user_id: userId,
      reason,
      score: null,
      received_ts: Date.now(),
    })
    .execute();
}
