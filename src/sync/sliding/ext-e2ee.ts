/**
 * The `to_device` (MSC3885) and `e2ee` (MSC3884) extensions of sliding sync, on the same storage as /sync's
 * sections (src/sync/e2ee.ts). To-device messages carry their own `since`/`next_batch` (a stream position as a
 * decimal string): a request's `since` acknowledges (deletes) the device's messages up to it, as Synapse does.
 */
import { MatrixError } from '../../api/errors.js';
import type { JsonObject } from '../../rooms/event.js';
import { deviceListDelta } from '../../e2ee/device-lists.js';
import { oneTimeKeyCounts } from '../../e2ee/keys.js';
import { TO_DEVICE_LIMIT } from '../../e2ee/to-device.js';
import { unusedFallbackKeyTypes } from '../../storage/e2ee-keys.js';
import { deleteToDeviceUpTo, pendingToDevice } from '../../storage/to-device.js';
import type { SyncDeps } from '../sync.js';
import type { ExtensionsInput } from './extensions.js';

export interface ToDeviceRequest {
  limit?: number | null | undefined;
  since?: string | null | undefined;
}

export interface ExtensionResult {
  body: JsonObject;
  hasData: boolean;
}

function parseSince(since: string): number {
  if (!/^\d{1,15}$/.test(since)) throw new MatrixError('M_INVALID_PARAM', 'Invalid to_device since token');
  return Number(since);
}

export async function toDeviceExtension(
  deps: SyncDeps,
  req: ToDeviceRequest,
  input: ExtensionsInput,
): Promise<ExtensionResult> {
  const { db } = deps.storage;
  const to = input.to.stream;
  const since = req.since === undefined || req.since === null ? 0 : parseSince(req.since);
  // A token from the future (another database, a restore): nothing to deliver, and the token stays as it is.
  if (since > to) return { body: { next_batch: String(since), events: [] }, hasData: false };
  if (since > 0) await deleteToDeviceUpTo(db, input.userId, input.deviceId, since);
  const limit = Math.min(req.limit ?? TO_DEVICE_LIMIT, TO_DEVICE_LIMIT);
  const rows = limit > 0 ? await pendingToDevice(db, input.userId, input.deviceId, since, to, limit) : [];
  const last = rows[rows.length - 1];
  // Cut short at the limit: the next batch starts after the last message delivered.
  const nextBatch = rows.length === limit && last ? last.stream_pos : to;
  const events: JsonObject[] = [];
  for (const r of rows) {
    let content: unknown;
    try {
      content = JSON.parse(r.content);
    } catch {
      continue; // a damaged message cannot be delivered; it is acknowledged with the rest
    }
    events.push({ sender: r.sender, type: r.type, content: content as JsonObject });
  }
  return { body: { next_batch: String(nextBatch), events }, hasData: events.length > 0 };
}

export async function e2eeExtension(deps: SyncDeps, input: ExtensionsInput): Promise<ExtensionResult> {
  const { db } = deps.storage;
  const body: JsonObject = {
    device_one_time_keys_count: await oneTimeKeyCounts(db, input.userId, input.deviceId),
    device_unused_fallback_key_types: await unusedFallbackKeyTypes(db, input.userId, input.deviceId),
  };
  if (input.since === null) return { body, hasData: false };
  const lists = await deviceListDelta(db, input.userId, input.since.stream, input.to.stream);
  body.device_lists = { changed: lists.changed, left: lists.left };
  return { body, hasData: lists.changed.length > 0 || lists.left.length > 0 };
}
