/**
 * Removing devices: their tokens, end-to-end keys and pending to-device messages go with them (foreign keys); the
 * removal is a device-list change the user's contacts hear of; the auth cache forgets them.
 */
import { withDeviceListChange } from '../e2ee/device-lists.js';
import type { Storage } from '../storage/db.js';
import { deleteDevices } from '../storage/devices.js';
import type { Notifier } from '../sync/notifier.js';

export async function removeDevices(
  deps: { storage: Storage; auth: { forget(userId: string): void }; notifier: Notifier },
  userId: string,
  deviceIds: readonly string[],
): Promise<void> {
  if (deviceIds.length === 0) return;
  await withDeviceListChange(deps, userId, false, (trx) => deleteDevices(trx, userId, deviceIds));
  deps.auth.forget(userId);
}
