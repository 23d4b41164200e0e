/**
 * Account deactivation (client-server API POST /account/deactivate; Synapse's admin v1/deactivate calls
 * `eraseUserData` too). As Synapse does: the account loses its password, display name, avatar and devices (and so
 * its tokens), its account data (ignored users, push rules, invite permission...) and key backup are deleted, and it
 * leaves every room it is joined to, invited to or knocking on. With `erase` its custom profile fields (v1.16) are
 * deleted as well (Synapse's `delete_profile_upon_deactivation`), the spec's "non-event data associated with the
 * user".
 */
import type { Storage } from '../storage/db.js';
import { forgetExclusions } from '../storage/sync-exclusions.js';
import { markDeactivated, type Executor } from '../storage/users.js';
import { membershipsOf } from '../sync/queries.js';
import type { RoomWriter } from '../input/room-writer.js';

export interface DeactivateDeps {
  storage: Storage;
  auth: { forget(userId: string): void };
  writer: Pick<RoomWriter, 'send'>;
}

/** Deletes what deactivation takes of a user's non-event data; custom profile fields only with `erase`. */
export async function eraseUserData(db: Executor, userId: string, erase: boolean): Promise<void> {
  await db.deleteFrom('account_data').where('user_id', '=', userId).execute();
  // Server-side key backup: the keys, then their versions.
  await db.deleteFrom('room_keys').where('user_id', '=', userId).execute();
  await db.deleteFrom('room_key_versions').where('user_id', '=', userId).execute();
  if (erase) await db.deleteFrom('profile_fields').where('user_id', '=', userId).execute();
  // Outside a transaction the rows are gone now; in one, the caller forgets again after the commit.
  forgetExclusions(db, userId);
}

export async function deactivateAccount(deps: DeactivateDeps, userId: string, erase: boolean): Promise<void> {
  const { storage } = deps;
  await storage.db.transaction().execute(async (trx) => {
    await markDeactivated(trx, userId);
    await trx.deleteFrom('devices').where('user_id', '=', userId).execute();
    await eraseUserData(trx, userId, erase);
  });
  forgetExclusions(storage.db, userId);
  deps.auth.forget(userId);
  await leaveAllRooms(deps, userId);
}

/** Leaves (or rejects, or rescinds) every room the user is in, invited to or knocking on; a failure is skipped. */
export async function leaveAllRooms(
  deps: Pick<DeactivateDeps, 'storage' | 'writer'>,
  userId: string,
): Promise<void> {
  for (const m of await membershipsOf(deps.storage.db, userId)) {
    if (m.membership !== 'join' && m.membership !== 'invite' && m.membership !== 'knock') continue;
    await deps.writer
      .send(m.room_id, {
        type: 'm.room.member',
        state_key: userId,
        sender: userId,
        content: { membership: 'leave' },
      })
      .catch(() => undefined);
  }
}
