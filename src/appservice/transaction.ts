/**
 * Builds the next transaction for an application service from the stream range after its delivered position:
 * the events it is interested in (at most 100, Synapse's limit, in stream order, client format), and, when its
 * registration asks, the ephemeral data stamped in the same range (receipts, presence), to-device messages to its
 * users' devices and the MSC3202 device-list and key-count sections. Field names are Synapse's: `ephemeral` and
 * `de.sorunome.msc2409.ephemeral` (both, with the same list), `de.sorunome.msc2409.to_device`, `org.matrix.msc3202.device_lists`, `org.matrix.msc3202.device_one_time_keys_count`
 * (and its older name `device_one_time_key_counts`), `org.matrix.msc3202.device_unused_fallback_key_types`.
 *
 * Events whose row is damaged are skipped (the event reader reports them); they never block the queue.
 */
import type { JsonObject } from '../rooms/event.js';
import { oneTimeKeyCounts } from '../e2ee/keys.js';
import type { EventReader } from '../read/event-reader.js';
import { presenceContent } from '../sync/ephemeral.js';
import { formatEvents } from '../sync/format.js';
import { deviceIdsOf, receiptsInStreamRange, toDeviceInRange } from '../storage/appservice.js';
import type { Storage } from '../storage/db.js';
import { unusedFallbackKeyTypes } from '../storage/e2ee-keys.js';
import {
  deviceListChangesIn,
  eventsInRange,
  presenceStampedIn,
  type FanoutEvent,
} from '../storage/federation-queue.js';
import { usersSharingRoomWith } from '../storage/presence.js';
import { RoomInterest, type InterestMatcher } from './interest.js';

/** Events per transaction (Synapse's limit). */
export const MAX_EVENTS_PER_TXN = 100;
/** To-device messages per transaction (cut at a stream position, so a little more when one position holds many). */
export const MAX_TO_DEVICE_PER_TXN = 100;
/** Events examined per build: a long stretch that concerns the service is skipped in steps of this size. */
const SCAN_LIMIT = 2_000;
const READ_STEP = 500;

export const TO_DEVICE_FIELD = 'de.sorunome.msc2409.to_device';

/** What the builder needs to know of one registration. */
export interface ServiceView {
  id: string;
  matcher: InterestMatcher;
  /** receive_ephemeral (or its MSC2409 names). */
  ephemeral: boolean;
  /** org.matrix.msc3202: to-device messages, device lists and key counts of its users' devices. */
  msc3202: boolean;
}

export interface BuildDeps {
  storage: Storage;
  reader: EventReader;
  serverName: string;
  presenceEnabled: boolean;
}

export interface BuiltTxn {
  /** The end of the range the transaction covers (the position to store once it is acknowledged). */
  toPos: number;
  /** Undefined when the range holds nothing for the service. */
  body: JsonObject | undefined;
  events: number;
}

/** Picks the service's events after `from`, up to `head`; the range ends early at the 100th or after SCAN_LIMIT. */
async function pickEvents(
  deps: BuildDeps,
  svc: ServiceView,
  rooms: RoomInterest,
  from: number,
  head: number,
): Promise<{ picked: FanoutEvent[]; to: number }> {
  const { db } = deps.storage;
  const picked: FanoutEvent[] = [];
  let cursor = from;
  let scanned = 0;
  while (cursor < head) {
    const rows = await eventsInRange(db, cursor, head, READ_STEP);
    for (const ev of rows) {
      cursor = ev.stream_ordering;
      scanned++;
      if (await rooms.event(svc.matcher, ev)) {
        picked.push(ev);
        if (picked.length >= MAX_EVENTS_PER_TXN) return { picked, to: cursor };
      }
      if (scanned >= SCAN_LIMIT) return { picked, to: cursor };
    }
    if (rows.length < READ_STEP) return { picked, to: head };
  }
  return { picked, to: head };
}

function parseObject(text: string): JsonObject | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : undefined;
  } catch {
    return undefined;
  }
}

async function receiptEvents(
  deps: BuildDeps,
  svc: ServiceView,
  rooms: RoomInterest,
  from: number,
  to: number,
): Promise<JsonObject[]> {
  const byRoom = new Map<string, Record<string, Record<string, Record<string, unknown>>>>();
  for (const r of await receiptsInStreamRange(deps.storage.db, from, to)) {
    // Private receipts only of the service's own users (MSC2409).
    if (r.receipt_type === 'm.read.private' && !svc.matcher.user(r.user_id)) continue;
    if (!(await rooms.interesting(svc.matcher, r.room_nid))) continue;
    const data = parseObject(r.data) ?? {};
    if (r.thread_id) data.thread_id = r.thread_id;
    let content = byRoom.get(r.room_id);
    if (!content) byRoom.set(r.room_id, (content = {}));
    const byType = (content[r.event_id] ??= {});
    ((byType[r.receipt_type] ??= {}) as Record<string, unknown>)[r.user_id] = data;
  }
  return [...byRoom].map(([roomId, content]) => ({ type: 'm.receipt', room_id: roomId, content }));
}

/** Whether the user is the service's or shares a room with one of its users. */
async function sharesWithService(deps: BuildDeps, svc: ServiceView, userId: string): Promise<boolean> {
  if (svc.matcher.user(userId)) return true;
  return (await usersSharingRoomWith(deps.storage.db, userId)).some((u) => svc.matcher.user(u));
}

async function presenceEvents(
  deps: BuildDeps,
  svc: ServiceView,
  from: number,
  to: number,
): Promise<JsonObject[]> {
  if (!deps.presenceEnabled) return [];
  const out: JsonObject[] = [];
  const now = Date.now();
  for (const p of await presenceStampedIn(deps.storage.db, from, to)) {
    if (!(await sharesWithService(deps, svc, p.user_id))) continue;
    const content = presenceContent(
      {
        state: p.state,
        statusMsg: p.status_msg,
        lastActiveTs: p.last_active_ts,
        currentlyActive: p.currently_active === 1,
      },
      now,
    );
    out.push({ type: 'm.presence', sender: p.user_id, content: content as unknown as JsonObject });
  }
  return out;
}

/**
 * The next transaction after `from` (everything up to `head` has committed). `typing` are the in-memory typing
 * events waiting for the service; they alone make a transaction that moves no position.
 */
export async function buildTransaction(
  deps: BuildDeps,
  svc: ServiceView,
  from: number,
  head: number,
  typing: readonly JsonObject[],
): Promise<BuiltTxn> {
  const { db } = deps.storage;
  const rooms = new RoomInterest(db);
  let { picked, to } = await pickEvents(deps, svc, rooms, from, head);

  // To-device messages to the service's users' devices, cut at a stream position after MAX_TO_DEVICE_PER_TXN.
  const toDevice: JsonObject[] = [];
  const keyUsers = new Set<string>();
  if (svc.ephemeral && svc.msc3202) {
    const rows = (await toDeviceInRange(db, deps.serverName, from, to)).filter((r) =>
      svc.matcher.user(r.user_id),
    );
    const cut = rows[MAX_TO_DEVICE_PER_TXN - 1];
    if (rows.length > MAX_TO_DEVICE_PER_TXN && cut) {
      to = cut.stream_pos;
      picked = picked.filter((ev) => ev.stream_ordering <= to);
    }
    for (const r of rows) {
      if (r.stream_pos > to) break;
      const content = parseObject(r.content);
      if (!content) {
        deps.reader.damage.report({
          kind: 'outbox_row_unparsable',
          detail: `to-device message for ${r.user_id}/${r.device_id} at ${r.stream_pos} is unreadable; not sent`,
        });
        continue;
      }
      toDevice.push({
        type: r.type,
        sender: r.sender,
        to_user_id: r.user_id,
        to_device_id: r.device_id,
        content,
      });
      keyUsers.add(r.user_id);
    }
  }

  const loaded = await deps.reader.listByNids(picked.map((e) => e.event_nid));
  const events = await formatEvents({ reader: deps.reader, storage: deps.storage }, loaded, {
    format: 'client',
  });

  const ephemeral: JsonObject[] = [];
  if (svc.ephemeral) {
    ephemeral.push(...(await receiptEvents(deps, svc, rooms, from, to)));
    ephemeral.push(...(await presenceEvents(deps, svc, from, to)));
    ephemeral.push(...typing);
  }

  const body: JsonObject = { events };
  if (svc.ephemeral && ephemeral.length) {
    // Both names: the registration's key does not say which one the service reads (matrix-bot-sdk reads only the
    // unstable one, spec v1.13 services the stable one).
    body.ephemeral = ephemeral;
    body['de.sorunome.msc2409.ephemeral'] = ephemeral;
  }
  if (toDevice.length) body[TO_DEVICE_FIELD] = toDevice;
  let extra = ephemeral.length + toDevice.length;
  if (svc.msc3202) {
    const changed: string[] = [];
    for (const c of await deviceListChangesIn(db, from, to))
      if (!changed.includes(c.user_id) && (await sharesWithService(deps, svc, c.user_id)))
        changed.push(c.user_id);
    if (changed.length) body['org.matrix.msc3202.device_lists'] = { changed, left: [] };
    for (const ev of loaded) if (svc.matcher.user(ev.pdu.sender)) keyUsers.add(ev.pdu.sender);
    const counts: Record<string, Record<string, JsonObject>> = {};
    const fallbacks: Record<string, Record<string, string[]>> = {};
    for (const userId of keyUsers) {
      if (!userId.endsWith(`:${deps.serverName}`)) continue;
      for (const deviceId of await deviceIdsOf(db, userId)) {
        (counts[userId] ??= {})[deviceId] = await oneTimeKeyCounts(db, userId, deviceId);
        (fallbacks[userId] ??= {})[deviceId] = await unusedFallbackKeyTypes(db, userId, deviceId);
      }
    }
    if (Object.keys(counts).length) {
      body['org.matrix.msc3202.device_one_time_keys_count'] = counts;
      body['org.matrix.msc3202.device_one_time_key_counts'] = counts;
      body['org.matrix.msc3202.device_unused_fallback_key_types'] = fallbacks;
    }
    extra += changed.length;
  }
  const empty = events.length === 0 && extra === 0;
  return { toPos: to, body: empty ? undefined : body, events: events.length };
}

/** The to-device recipients a stored transaction body carries (deleted from the inbox once it is acknowledged). */
export function toDeviceRecipients(body: JsonObject): { userId: string; deviceId: string }[] {
  const list = body[TO_DEVICE_FIELD];
  if (!Array.isArray(list)) return [];
  const out: { userId: string; deviceId: string }[] = [];
  for (const m of list) {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) continue;
    const { to_user_id: userId, to_device_id: deviceId } = m as JsonObject;
    if (typeof userId === 'string' && typeof deviceId === 'string') out.push({ userId, deviceId });
  }
  return out;
}
