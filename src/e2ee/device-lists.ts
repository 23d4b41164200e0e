/**
 * Device-list tracking. A change of a user's devices or cross-signing keys is a row in `device_list_changes` at a
 * stream position, written in the same transaction as the change. Who hears of it is decided when reading: users
 * sharing a joined room with the changed user (and the user themself). Joins and leaves need no rows: they are read
 * from the membership changes of the reader's rooms in the same (from, to] window.
 */
import type { Transaction } from 'kysely';
import type { Storage } from '../storage/db.js';
import {
  insertDeviceListChange,
  joinedMembersOf,
  joinedRoomIds,
  joinedRoomNids,
  membershipChangesIn,
  ownMembershipChanges,
  usersChangedBetween,
} from '../storage/device-lists.js';
import type { Database } from '../storage/schema.js';
import type { Notifier } from '../sync/notifier.js';

export interface E2eeDeps {
  storage: Storage;
  notifier: Notifier;
}

/**
 * Runs `write` in a transaction together with a device-list change row for `userId`, then wakes the long-polls
 * that may report it. `onlySelf` changes (user-signing key, signatures of other users) concern the user alone.
 */
export async function withDeviceListChange<T>(
  deps: E2eeDeps,
  userId: string,
  onlySelf: boolean,
  write: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  const result = await deps.storage.stream.withPosition((pos) =>
    deps.storage.db.transaction().execute(async (trx) => {
      const r = await write(trx);
      await insertDeviceListChange(trx, pos, userId, onlySelf);
      return r;
    }),
  );
  await notifyDeviceListChange(deps, userId, onlySelf);
  return result;
}

export async function notifyDeviceListChange(
  deps: E2eeDeps,
  userId: string,
  onlySelf: boolean,
): Promise<void> {
  deps.notifier.notifyUsers([userId]);
  if (!onlySelf) deps.notifier.notifyRooms(await joinedRoomIds(deps.storage.db, userId));
}

export interface DeviceListDelta {
  changed: string[];
  left: string[];
}

/**
 * The device-list delta of `userId` over (from, to]: users sharing a room whose devices or cross-signing keys
 * changed, users newly sharing a room (their join or the reader's), and users no longer sharing any room.
 */
export async function deviceListDelta(
  db: Storage['db'],
  userId: string,
  from: number,
  to: number,
): Promise<DeviceListDelta> {
  if (to <= from) return { changed: [], left: [] };
  const rooms = await joinedRoomNids(db, userId);
  const keyChanges = await usersChangedBetween(db, userId, from, to);
  const own = await ownMembershipChanges(db, userId, from, to);
  const roomChanges = await membershipChangesIn(db, rooms, from, to);
  // The usual incremental sync: nothing changed, so the (possibly large) set of users sharing a room is not loaded.
  if (keyChanges.length === 0 && own.length === 0 && roomChanges.length === 0)
    return { changed: [], left: [] };
  const shared = await joinedMembersOf(db, rooms);
  shared.add(userId);
  const changed = new Set<string>();
  for (const u of keyChanges) if (shared.has(u)) changed.add(u);

  const candidatesLeft = new Set<string>();
  const joinedNow = new Set(rooms);
  const newlyJoined = own.filter((m) => m.membership === 'join').map((m) => m.room_nid);
  for (const u of await joinedMembersOf(db, newlyJoined)) if (u !== userId) changed.add(u);
  const leftRooms = own
    .filter((m) => m.membership !== 'join' && !joinedNow.has(m.room_nid))
    .map((m) => m.room_nid);
  for (const u of await joinedMembersOf(db, leftRooms)) candidatesLeft.add(u);

  for (const m of roomChanges) {
    if (m.user_id === userId) continue;
    if (m.membership === 'join') changed.add(m.user_id);
    else if (m.membership === 'leave' || m.membership === 'ban') candidatesLeft.add(m.user_id);
  }
  const left = [...candidatesLeft].filter((u) => !shared.has(u) && u !== userId);
  for (const u of left) changed.delete(u);
  return { changed: [...changed].sort(), left: left.sort() };
}
