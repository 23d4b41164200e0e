/**
 * Send-to-device messaging. A PUT is stored for every recipient device at one stream position, in one
 * transaction with the sender's transaction id, so a retried request is not delivered twice.
 */
import { listDevices } from '../storage/devices.js';
import type { ToDeviceRow } from '../storage/to-device.js';
import { hasToDeviceTxn, insertToDeviceMessages, recordToDeviceTxn } from '../storage/to-device.js';
import type { JsonObject } from '../rooms/event.js';
import type { E2eeDeps } from './device-lists.js';
import { canonicalOrBadJson, serverOf } from './json.js';

/** At most this many to-device messages go in one /sync response; the rest follow in the next. */
export const TO_DEVICE_LIMIT = 100;

export async function sendToDevice(
  deps: E2eeDeps & { serverName: string },
  sender: { userId: string; deviceId: string },
  type: string,
  txnId: string,
  messages: Record<string, Record<string, JsonObject>>,
): Promise<void> {
  const { db } = deps.storage;
  if (await hasToDeviceTxn(db, sender.userId, sender.deviceId, txnId)) return;
  const rows: Omit<ToDeviceRow, 'stream_pos'>[] = [];
  for (const [userId, byDevice] of Object.entries(messages)) {
    // Other servers' users would be reached over federation, which Hearth does not speak yet.
    if (serverOf(userId) !== deps.serverName) continue;
    const devices = (await listDevices(db, userId)).map((d) => d.device_id);
    const known = new Set(devices);
    const targets = new Map<string, JsonObject>();
    for (const [deviceId, content] of Object.entries(byDevice)) {
      if (deviceId === '*') for (const d of devices) targets.set(d, content);
      else if (known.has(deviceId)) targets.set(deviceId, content);
    }
    for (const [deviceId, content] of targets) {
      rows.push({
        user_id: userId,
        device_id: deviceId,
        sender: sender.userId,
        type,
        content: canonicalOrBadJson(content, 'to-device content'),
      });
    }
  }
  const recipients = new Set(rows.map((r) => r.user_id));
  await deps.storage.stream.withPosition((pos) =>
    db.transaction().execute(async (trx) => {
      if (!(await recordToDeviceTxn(trx, sender.userId, sender.deviceId, txnId, Date.now()))) return;
      await insertToDeviceMessages(
        trx,
        rows.map((r) => ({ ...r, stream_pos: pos })),
      );
    }),
  );
  deps.notifier.notifyUsers(recipients);
}
