/**
 * Send-to-device messaging. A PUT is stored for every recipient device at one stream position, in one
 * transaction with the sender's transaction id, so a retried request is not delivered twice. Messages to other
 * servers' users become one m.direct_to_device EDU per server in the federation outbox, in the same transaction
 * (the federation sender notices the new rows when the stream advances).
 */
import { randomBytes } from 'node:crypto';
import { listDevices } from '../storage/devices.js';
import { insertOutboxRows, type NewOutboxRow } from '../storage/federation-queue.js';
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
  const remote = new Map<string, Record<string, Record<string, JsonObject>>>();
  for (const [userId, byDevice] of Object.entries(messages)) {
    const server = serverOf(userId);
    if (server !== deps.serverName) {
      // Checked here so a bad value is 400 before anything is stored.
      canonicalOrBadJson(byDevice, 'to-device content');
      let forServer = remote.get(server);
      if (!forServer) remote.set(server, (forServer = {}));
      forServer[userId] = byDevice;
      continue;
    }
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
  const outbox: NewOutboxRow[] = [...remote].map(([destination, byUser]) => ({
    destination,
    event_nid: null,
    room_nid: null,
    edu_type: 'm.direct_to_device',
    edu_content: JSON.stringify({
      sender: sender.userId,
      type,
      message_id: randomBytes(16).toString('hex'),
      messages: byUser,
    }),
  }));
  await deps.storage.stream.withPosition((pos) =>
    db.transaction().execute(async (trx) => {
      if (!(await recordToDeviceTxn(trx, sender.userId, sender.deviceId, txnId, Date.now()))) return;
      await insertToDeviceMessages(
        trx,
        rows.map((r) => ({ ...r, stream_pos: pos })),
      );
      await insertOutboxRows(trx, outbox, Date.now());
    }),
  );
  deps.notifier.notifyUsers(recipients);
}
