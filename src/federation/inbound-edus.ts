/**
 * EDUs received in a /send transaction. Each is checked against the transaction's (authenticated) origin: a server
 * speaks only for its own users. Unknown EDU types and malformed EDUs are ignored, as Synapse ignores them; an EDU
 * never fails the transaction.
 *
 * - m.typing: into the typing store (60 s, Synapse's federation typing timeout) when the user is joined to the room.
 * - m.receipt: m.read receipts of the origin's joined users on events this server has in that room.
 *   Both are ignored for a room whose m.room.server_acl denies the origin (server-server API "Server ACLs").
 * - m.direct_to_device: delivered to local devices at one stream position; `message_id` is recorded per sender so a
 *   resent EDU is not delivered twice.
 * - m.presence (when presence is enabled): the origin's users' presence, stored like local presence and shown to
 *   local users sharing a room with them.
 * - m.device_list_update, m.signing_key_update: a device-list change row for the remote user, so local users sharing
 *   a room see them in /sync `device_lists.changed` and query their keys again (keys are fetched over federation on
 *   each /keys/query, not cached).
 */
import type { Logger } from 'pino';
import { canonicalJson } from '../rooms/canonical-json.js';
import type { Storage } from '../storage/db.js';
import { listDevices } from '../storage/devices.js';
import { insertDeviceListChange, joinedRoomIds } from '../storage/device-lists.js';
import { getEventRowById } from '../storage/events.js';
import { recordReceivedToDevice, roomMembership } from '../storage/federation-queue.js';
import {
  putPresence,
  usersSharingRoomWith,
  type PresenceRow,
  type PresenceState,
} from '../storage/presence.js';
import { putReceiptIfNewer } from '../storage/receipts.js';
import { insertToDeviceMessages, type ToDeviceRow } from '../storage/to-device.js';
import type { Notifier } from '../sync/notifier.js';
import type { TypingStore } from '../sync/typing.js';
import { isJsonObject } from '../util/validate.js';

/** How long a remote user shows as typing without a renewal (Synapse's FEDERATION_TIMEOUT). */
export const FEDERATION_TYPING_TIMEOUT_MS = 60_000;

export interface InboundEduDeps {
  storage: Storage;
  serverName: string;
  typing: TypingStore;
  notifier: Notifier;
  log: Logger;
  /** Whether the room's m.room.server_acl allows `origin` (true for a room this server does not know). */
  aclAllows(roomId: string, origin: string): Promise<boolean>;
  /** presence.enabled: m.presence EDUs are ignored otherwise. */
  presenceEnabled?: boolean | undefined;
  /** The cache of other servers' users' keys: a device-list or signing-key update marks the user's entry stale. */
  remoteDevices?: { invalidate(userId: string): void } | undefined;
}

export interface InboundEdu {
  edu_type: string;
  content: unknown;
}

const serverOf = (userId: string): string => userId.slice(userId.indexOf(':') + 1);

export async function handleEdus(
  deps: InboundEduDeps,
  origin: string,
  edus: readonly InboundEdu[],
): Promise<void> {
  for (const edu of edus) {
    if (!isJsonObject(edu.content)) continue;
    try {
      switch (edu.edu_type) {
        case 'm.typing':
          await typing(deps, origin, edu.content);
          break;
        case 'm.receipt':
          await receipts(deps, origin, edu.content);
          break;
        case 'm.direct_to_device':
          await toDevice(deps, origin, edu.content);
          break;
        case 'm.presence':
          if (deps.presenceEnabled) await presence(deps, origin, edu.content);
          break;
        case 'm.device_list_update':
        case 'm.signing_key_update':
          await deviceListUpdate(deps, origin, edu.content);
          break;
        default:
          break;
      }
    } catch (err) {
      deps.log.warn({ err, origin, eduType: edu.edu_type }, 'failed to handle an EDU');
    }
  }
}

async function typing(deps: InboundEduDeps, origin: string, c: Record<string, unknown>): Promise<void> {
  const { room_id: roomId, user_id: userId, typing: isTyping } = c;
  if (typeof roomId !== 'string' || typeof userId !== 'string' || typeof isTyping !== 'boolean') return;
  if (serverOf(userId) !== origin || !(await deps.aclAllows(roomId, origin))) return;
  const m = await roomMembership(deps.storage.db, roomId, userId);
  if (m?.membership !== 'join') return;
  deps.typing.set(roomId, userId, isTyping, FEDERATION_TYPING_TIMEOUT_MS);
}

async function receipts(deps: InboundEduDeps, origin: string, c: Record<string, unknown>): Promise<void> {
  const { db, stream } = deps.storage;
  const woken = new Set<string>();
  for (const [roomId, byType] of Object.entries(c)) {
    if (!isJsonObject(byType) || !(await deps.aclAllows(roomId, origin))) continue;
    const read = byType['m.read'];
    if (!isJsonObject(read)) continue;
    for (const [userId, receipt] of Object.entries(read)) {
      if (serverOf(userId) !== origin || !isJsonObject(receipt)) continue;
      const ids = receipt.event_ids;
      const eventId = Array.isArray(ids) ? ids.find((i): i is string => typeof i === 'string') : undefined;
      if (!eventId) continue;
      const m = await roomMembership(db, roomId, userId);
      if (!m || m.membership !== 'join') continue;
      const row = await getEventRowById(db, eventId);
      if (!row || Number(row.room_nid) !== m.roomNid || row.stream_ordering === null) continue;
      const data = isJsonObject(receipt.data) ? receipt.data : {};
      const { thread_id: threadId, ...rest } = data;
      const ordering = Number(row.stream_ordering);
      const stored = await stream.withPosition((pos) =>
        db.transaction().execute((trx) =>
          putReceiptIfNewer(
            trx,
            {
              roomNid: m.roomNid,
              userId,
              receiptType: 'm.read',
              threadId: typeof threadId === 'string' ? threadId : '',
              eventId,
              data: canonicalJson(rest),
            },
            ordering,
            pos,
          ),
        ),
      );
      if (stored) woken.add(roomId);
    }
  }
  if (woken.size) deps.notifier.notifyRooms(woken);
}

async function toDevice(deps: InboundEduDeps, origin: string, c: Record<string, unknown>): Promise<void> {
  const { sender, type, message_id: messageId, messages } = c;
  if (typeof sender !== 'string' || typeof type !== 'string' || typeof messageId !== 'string') return;
  if (serverOf(sender) !== origin || !isJsonObject(messages)) return;
  const { db, stream } = deps.storage;
  const rows: Omit<ToDeviceRow, 'stream_pos'>[] = [];
  for (const [userId, byDevice] of Object.entries(messages)) {
    if (serverOf(userId) !== deps.serverName || !isJsonObject(byDevice)) continue;
    const devices = (await listDevices(db, userId)).map((d) => d.device_id);
    const known = new Set(devices);
    const targets = new Map<string, unknown>();
    for (const [deviceId, content] of Object.entries(byDevice)) {
      if (!isJsonObject(content)) continue;
      if (deviceId === '*') for (const d of devices) targets.set(d, content);
      else if (known.has(deviceId)) targets.set(deviceId, content);
    }
    for (const [deviceId, content] of targets)
      rows.push({ user_id: userId, device_id: deviceId, sender, type, content: canonicalJson(content) });
  }
  let delivered = false;
  await stream.withPosition((pos) =>
    db.transaction().execute(async (trx) => {
      if (!(await recordReceivedToDevice(trx, sender, messageId, Date.now()))) return;
      await insertToDeviceMessages(
        trx,
        rows.map((r) => ({ ...r, stream_pos: pos })),
      );
      delivered = rows.length > 0;
    }),
  );
  if (delivered) deps.notifier.notifyUsers(new Set(rows.map((r) => r.user_id)));
}

async function deviceListUpdate(
  deps: InboundEduDeps,
  origin: string,
  c: Record<string, unknown>,
): Promise<void> {
  const userId = c.user_id;
  if (typeof userId !== 'string' || serverOf(userId) !== origin) return;
  deps.remoteDevices?.invalidate(userId);
  const { db, stream } = deps.storage;
  const rooms = await joinedRoomIds(db, userId);
  // Nobody here shares a room with the user: nothing to tell.
  if (rooms.length === 0) return;
  await stream.withPosition((pos) => insertDeviceListChange(db, pos, userId, false));
  deps.notifier.notifyRooms(rooms);
}

const PRESENCE_STATES = new Set(['online', 'unavailable', 'offline']);

async function presence(deps: InboundEduDeps, origin: string, c: Record<string, unknown>): Promise<void> {
  if (!Array.isArray(c.push)) return;
  const { db, stream } = deps.storage;
  for (const p of c.push) {
    if (!isJsonObject(p)) continue;
    const { user_id: userId, presence: state, last_active_ago: ago, status_msg: msg } = p;
    if (typeof userId !== 'string' || serverOf(userId) !== origin) continue;
    if (typeof state !== 'string' || !PRESENCE_STATES.has(state)) continue;
    const audience = await usersSharingRoomWith(db, userId);
    // Nobody here shares a room with the user: their presence concerns no one.
    if (audience.length === 0) continue;
    const row: PresenceRow = {
      userId,
      state: state as PresenceState,
      statusMsg: typeof msg === 'string' ? msg : null,
      lastActiveTs: Date.now() - (typeof ago === 'number' && ago >= 0 ? ago : 0),
      currentlyActive: p.currently_active === true,
    };
    await stream.withPosition((pos) => putPresence(db, row, pos));
    deps.notifier.notifyUsers(audience);
  }
}
