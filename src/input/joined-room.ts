/**
 * The transaction of a join over federation (the joining side of send_join): the room row (created with the room's
 * version when unknown), the auth chain and state as outliers, the state as a full snapshot, the join event with that
 * snapshot as the state before it and a stream position, the state after it, the room's current state, memberships,
 * forward extremities and current snapshot. All in the caller's one transaction.
 */
import type { Transaction } from 'kysely';
import { canonicalJson } from '../rooms/canonical-json.js';
import type { Pdu } from '../rooms/event.js';
import type { RoomVersion } from '../rooms/room-versions.js';
import { insertEvent } from '../storage/events.js';
import type { Database } from '../storage/schema.js';
import { insertSnapshot, stateKey, type StateMapNids } from '../storage/state.js';
import { snapshotOf, writeCurrentState, writeOutliers, type OutlierEvent } from './remote-events.js';
import { forRules } from './state-at.js';

export interface JoinedRoom {
  roomId: string;
  version: RoomVersion;
  /** The auth chain and the state before the join, checked (rejected ones carry their reason). */
  outliers: OutlierEvent[];
  /** The ids of the state before the join (among `outliers`). */
  stateIds: string[];
  join: { eventId: string; raw: Pdu };
}

export async function writeJoinedRoom(
  trx: Transaction<Database>,
  room: JoinedRoom,
  position: number,
): Promise<{ roomNid: number; eventNid: number }> {
  const version = room.version;
  const existing = await trx
    .selectFrom('rooms')
    .select('room_nid')
    .where('room_id', '=', room.roomId)
    .executeTakeFirst();
  let roomNid: number;
  if (existing) roomNid = Number(existing.room_nid);
  else {
    const create = room.outliers.find((o) => o.raw.type === 'm.room.create' && o.raw.state_key === '');
    const row = await trx
      .insertInto('rooms')
      .values({
        room_id: room.roomId,
        room_version: version.id,
        creator: create?.raw.sender ?? room.join.raw.sender,
        created_ts: create?.raw.origin_server_ts ?? Date.now(),
        is_public: 0,
        current_snapshot_nid: null,
      })
      .returning('room_nid')
      .executeTakeFirstOrThrow();
    roomNid = Number(row.room_nid);
  }
  const nids = await writeOutliers(trx, roomNid, version, room.outliers);
  const rejected = new Set(room.outliers.filter((o) => o.rejectedReason).map((o) => o.eventId));
  const state: StateMapNids = new Map();
  for (const id of room.stateIds) {
    const o = room.outliers.find((x) => x.eventId === id);
    const nid = nids.get(id);
    if (!o || nid === undefined || rejected.has(id) || typeof o.raw.state_key !== 'string') continue;
    state.set(stateKey(o.raw.type, o.raw.state_key), nid);
  }
  const before = await insertSnapshot(trx, roomNid, null, state);
  const pdu = forRules(room.join.raw, version);
  const eventNid = await insertEvent(
    trx,
    {
      eventId: room.join.eventId,
      roomNid,
      type: pdu.type,
      stateKey: pdu.state_key ?? null,
      sender: pdu.sender,
      depth: pdu.depth,
      originServerTs: pdu.origin_server_ts,
      streamOrdering: position,
      json: canonicalJson(room.join.raw),
      stateSnapshotNid: before.nid,
      containsUrl: false,
    },
    pdu.prev_events,
    pdu.auth_events,
  );
  const after = new Map(state);
  after.set(stateKey(pdu.type, pdu.state_key ?? ''), eventNid);
  const afterSnap = await snapshotOf(trx, roomNid, after, { ...before, map: state });
  const currentRows = await trx
    .selectFrom('current_state')
    .select(['type', 'state_key', 'event_nid'])
    .where('room_nid', '=', roomNid)
    .execute();
  const old: StateMapNids = new Map(
    currentRows.map((r) => [stateKey(r.type, r.state_key), Number(r.event_nid)]),
  );
  await writeCurrentState(trx, roomNid, version, old, after);
  await trx.deleteFrom('forward_extremities').where('room_nid', '=', roomNid).execute();
  await trx.insertInto('forward_extremities').values({ room_nid: roomNid, event_nid: eventNid }).execute();
  await trx
    .updateTable('rooms')
    .set({ current_snapshot_nid: afterSnap.nid })
    .where('room_nid', '=', roomNid)
    .execute();
  return { roomNid, eventNid };
}

/**
 * A membership of a local user in a room this server is not in (an invite received, a knock or a leave sent over
 * federation): see RoomWriter.storeInvite. The membership is the event's.
 */
export async function writeInvite(
  trx: Transaction<Database>,
  inv: { roomId: string; version: RoomVersion; eventId: string; raw: Pdu; position: number },
): Promise<number> {
  const existing = await trx
    .selectFrom('rooms')
    .select('room_nid')
    .where('room_id', '=', inv.roomId)
    .executeTakeFirst();
  const roomNid = existing
    ? Number(existing.room_nid)
    : Number(
        (
          await trx
            .insertInto('rooms')
            .values({
              room_id: inv.roomId,
              room_version: inv.version.id,
              creator: inv.raw.sender,
              created_ts: inv.raw.origin_server_ts,
              is_public: 0,
              current_snapshot_nid: null,
            })
            .returning('room_nid')
            .executeTakeFirstOrThrow()
        ).room_nid,
      );
  const nids = await writeOutliers(trx, roomNid, inv.version, [{ eventId: inv.eventId, raw: inv.raw }]);
  const eventNid = nids.get(inv.eventId) as number;
  const userId = inv.raw.state_key as string;
  const membership = typeof inv.raw.content.membership === 'string' ? inv.raw.content.membership : 'invite';
  const values = { membership, event_nid: eventNid, stream_ordering: inv.position, forgotten: 0 };
  await trx
    .insertInto('room_members')
    .values({ room_nid: roomNid, user_id: userId, ...values })
    .onConflict((oc) => oc.columns(['room_nid', 'user_id']).doUpdateSet(values))
    .execute();
  return eventNid;
}
