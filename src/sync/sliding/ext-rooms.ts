/**
 * The room-scoped extensions of sliding sync: `account_data` (MSC3959), `receipts` (MSC3960) and `typing`
 * (MSC3961). Each answers for the rooms of the response its `lists`/`rooms` select (default `["*"]`: all). A room
 * the connection has not been sent yet (new in the window, or the connection state is unknown) gets its full
 * data; a room already sent gets what changed since the previous response.
 */
import type { JsonObject } from '../../rooms/event.js';
import { loadPushRules, PUSH_RULES_TYPE } from '../../push/rules-store.js';
import { roomNidsByIds } from '../../read/room-queries.js';
import { listAccountDataSince } from '../../storage/account-data.js';
import { joinedRoomNids } from '../../storage/device-lists.js';
import { receiptEventsForRooms, typingEvent } from '../ephemeral.js';
import type { SyncDeps } from '../sync.js';
import type { ExtensionResult } from './ext-e2ee.js';
import type { ExtensionsInput } from './extensions.js';

export interface RoomScopedRequest {
  lists?: readonly string[] | null | undefined;
  rooms?: readonly string[] | null | undefined;
}

/** The rooms of the response an extension request selects (Synapse's `find_relevant_room_ids_for_extension`). */
export function selectedRooms(req: RoomScopedRequest, input: ExtensionsInput): Set<string> {
  const out = new Set<string>();
  const lists = req.lists ?? ['*'];
  const rooms = req.rooms ?? ['*'];
  if (rooms.includes('*')) for (const r of input.subscribedRooms) out.add(r);
  else {
    const subscribed = new Set(input.subscribedRooms);
    for (const r of rooms) if (subscribed.has(r)) out.add(r);
  }
  const names = lists.includes('*') ? [...input.listRooms.keys()] : lists;
  for (const name of names) for (const r of input.listRooms.get(name) ?? []) out.add(r);
  return out;
}

/** The selected rooms the user is joined to, with their nids (receipts and typing are for members only). */
export async function joinedAmong(deps: SyncDeps, userId: string, rooms: ReadonlySet<string>) {
  const out = new Map<string, number>();
  if (rooms.size === 0) return out;
  const joined = new Set(await joinedRoomNids(deps.storage.db, userId));
  for (const [roomId, nid] of await roomNidsByIds(deps.storage.db, [...rooms])) {
    if (joined.has(nid)) out.set(roomId, nid);
  }
  return out;
}

function parsed(content: string): JsonObject | undefined {
  try {
    const v: unknown = JSON.parse(content);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as JsonObject;
  } catch {
    // a damaged row is skipped: the rest of the account data still syncs
  }
  return undefined;
}

export async function accountDataExtension(
  deps: SyncDeps,
  input: ExtensionsInput,
  rooms: ReadonlySet<string>,
  sent: ReadonlySet<string> | undefined,
): Promise<ExtensionResult> {
  const { storage } = deps;
  const since = input.since === null ? -1 : input.since.stream;
  const rows = await listAccountDataSince(storage.db, input.userId, since, input.to.stream);
  const global: JsonObject[] = [];
  const byRoom: Record<string, JsonObject[]> = {};
  const add = (roomId: string, ev: JsonObject) => (byRoom[roomId] ??= []).push(ev);
  const fresh = [...rooms].filter((r) => input.since === null || !sent?.has(r));
  let sawPushRules = false;
  for (const r of rows) {
    const content = parsed(r.content);
    if (!content) continue;
    if (r.room_id === '') {
      if (r.type === PUSH_RULES_TYPE) {
        sawPushRules = true;
        global.push({ type: r.type, content: { global: await loadPushRules(storage, input.userId) } });
      } else global.push({ type: r.type, content });
    } else if (rooms.has(r.room_id) && (input.since === null || sent?.has(r.room_id))) {
      add(r.room_id, { type: r.type, content });
    }
  }
  if (input.since === null && !sawPushRules) {
    global.push({ type: PUSH_RULES_TYPE, content: { global: await loadPushRules(storage, input.userId) } });
  }
  if (input.since !== null && fresh.length > 0) {
    // Rooms new to this connection: all their account data, not just what changed.
    const wanted = new Set(fresh);
    for (const r of await listAccountDataSince(storage.db, input.userId, -1, input.to.stream)) {
      if (!wanted.has(r.room_id)) continue;
      const content = parsed(r.content);
      if (content) add(r.room_id, { type: r.type, content });
    }
  }
  return {
    body: { global, rooms: byRoom },
    hasData: global.length > 0 || Object.keys(byRoom).length > 0,
  };
}

export async function receiptsExtension(
  deps: SyncDeps,
  input: ExtensionsInput,
  joined: ReadonlyMap<string, number>,
  sent: ReadonlySet<string> | undefined,
): Promise<ExtensionResult> {
  const live = new Map<number, string>();
  const fresh = new Map<number, string>();
  for (const [roomId, nid] of joined) {
    (input.since !== null && sent?.has(roomId) ? live : fresh).set(nid, roomId);
  }
  const { db } = deps.storage;
  const out: JsonObject = {};
  const since = input.since?.stream ?? null;
  if (live.size > 0 && since !== null) {
    for (const [roomId, ev] of await receiptEventsForRooms(db, live, input.userId, since, input.to.stream)) {
      out[roomId] = ev as unknown as JsonObject;
    }
  }
  if (fresh.size > 0) {
    for (const [roomId, ev] of await receiptEventsForRooms(db, fresh, input.userId, null, input.to.stream)) {
      out[roomId] = ev as unknown as JsonObject;
    }
  }
  return { body: { rooms: out }, hasData: Object.keys(out).length > 0 };
}

export function typingExtension(
  deps: SyncDeps,
  input: ExtensionsInput,
  joined: ReadonlyMap<string, number>,
  sent: ReadonlySet<string> | undefined,
): ExtensionResult {
  const { typing } = deps;
  // Typing serials restart with the process: an unknown one means "send the current typing state".
  const since = input.since !== null && input.since.typing <= typing.serial ? input.since.typing : null;
  const out: JsonObject = {};
  for (const roomId of joined.keys()) {
    const changed =
      since !== null && sent?.has(roomId)
        ? typing.roomChangedSince(roomId, since)
        : typing.typingIn(roomId).length > 0;
    if (changed) out[roomId] = typingEvent(typing, roomId) as unknown as JsonObject;
  }
  return { body: { rooms: out }, hasData: Object.keys(out).length > 0 };
}
