/** Removing devices: their tokens go with them (foreign keys); the auth cache forgets them. */
import type { Authenticator } from '../api/auth.js';
import type { Storage } from '../storage/db.js';
import { deleteDevices } from '../storage/devices.js';

export async function removeDevices(
  deps: { storage: Storage; auth: Authenticator },
  userId: string,
  deviceIds: readonly string[],
): Promise<void> {
  await deleteDevices(deps.storage.db, userId, deviceIds);
  deps.auth.forget(userId);
}
