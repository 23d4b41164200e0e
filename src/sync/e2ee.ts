/**
 * The end-to-end encryption sections of /sync: to_device, device_lists, device_one_time_keys_count and
 * device_unused_fallback_key_types.
 *
 * To-device messages are kept until acknowledged: a sync from a token acknowledges (deletes) the device's messages
 * up to the token's to-device position. That position is the token's stream position, unless the response that
 * issued the token was cut at TO_DEVICE_LIMIT messages: then the token carries the last delivered message's
 * position as an extra part, and the rest follow in the next response.
 */
import { parseStreamToken } from '../read/tokens.js';
import type { JsonObject } from '../rooms/event.js';
import { deviceListDelta } from '../e2ee/device-lists.js';
import { oneTimeKeyCounts } from '../e2ee/keys.js';
import { TO_DEVICE_LIMIT } from '../e2ee/to-device.js';
import { unusedFallbackKeyTypes } from '../storage/e2ee-keys.js';
import { deleteToDeviceUpTo, pendingToDevice } from '../storage/to-device.js';
import type { SyncContext } from './context.js';

/** Index of the to-device position among the token's extra parts (after the typing serial). */
const TO_DEVICE_PART = 1;

export interface E2eeSections {
  to_device: { events: JsonObject[] };
  device_lists: { changed: string[]; left: string[] };
  device_one_time_keys_count: Record<string, number>;
  device_unused_fallback_key_types: string[];
  /** Extra token parts to append after the typing serial (the to-device position when cut short). */
  tokenExtra: number[];
  /** True when nothing here is worth answering a long-poll for. */
  empty: boolean;
}

/** The to-device position a `since` token acknowledges, or null for an initial sync. */
function acknowledged(ctx: SyncContext, sinceToken: string | undefined): number | null {
  if (ctx.since === null || sinceToken === undefined) return null;
  const part = parseStreamToken(sinceToken, 'since').extra[TO_DEVICE_PART];
  return part === undefined ? ctx.since : Math.min(part, ctx.since);
}

/**
 * `maybe` says which parts can have anything (from one probe of the tables): `toDevice` false when the device has
 * no stored message at all, `deviceLists` false when no key changed and no membership changed in (since, to].
 */
export async function e2eeSync(
  ctx: SyncContext,
  sinceToken: string | undefined,
  maybe: { toDevice: boolean; deviceLists: boolean } = { toDevice: true, deviceLists: true },
): Promise<E2eeSections> {
  const { db } = ctx.storage;
  const ack = acknowledged(ctx, sinceToken);
  if (ack !== null && maybe.toDevice) await deleteToDeviceUpTo(db, ctx.userId, ctx.deviceId, ack);
  const rows = maybe.toDevice
    ? await pendingToDevice(db, ctx.userId, ctx.deviceId, ack ?? 0, ctx.to, TO_DEVICE_LIMIT + 1)
    : [];
  const delivered = rows.slice(0, TO_DEVICE_LIMIT);
  const last = delivered[delivered.length - 1];
  const tokenExtra = rows.length > TO_DEVICE_LIMIT && last ? [last.stream_pos] : [];
  const events = delivered.map((r) => ({
    sender: r.sender,
    type: r.type,
    content: JSON.parse(r.content) as JsonObject,
  }));
  const lists =
    ctx.since === null || !maybe.deviceLists
      ? { changed: [], left: [] }
      : await deviceListDelta(db, ctx.userId, ctx.since, ctx.to);
  return {
    to_device: { events },
    device_lists: lists,
    device_one_time_keys_count: await oneTimeKeyCounts(db, ctx.userId, ctx.deviceId),
    device_unused_fallback_key_types: await unusedFallbackKeyTypes(db, ctx.userId, ctx.deviceId),
    tokenExtra,
    empty: events.length === 0 && lists.changed.length === 0 && lists.left.length === 0,
  };
}
