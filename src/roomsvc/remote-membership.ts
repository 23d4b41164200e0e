/**
 * The handshake shared by joins, knocks and leaves over federation (server-server API "Joining Rooms", "Knocking
 * upon a room", "Leaving Rooms"): ask a resident server for a template (make_join, make_knock, make_leave), check it
 * is the event asked for, complete it with our content and a fresh timestamp, hash and sign it, and send it back
 * (send_join, send_knock, send_leave). Each candidate server is tried in turn; what the last one refused is relayed
 * to the client as a Matrix error.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError, type ErrCode } from '../api/errors.js';
import { FederationError, type FederationClient } from '../federation/client.js';
import type { KeyRing } from '../federation/keyring.js';
import type { RoomWriter } from '../input/room-writer.js';
import type { SigningKey } from '../keys/signing-key.js';
import { buildEvent } from '../rooms/build.js';
import type { JsonObject, Pdu } from '../rooms/event.js';
import { findRoomVersion, ROOM_VERSIONS, type RoomVersion } from '../rooms/room-versions.js';
import type { Storage } from '../storage/db.js';

export interface RemoteJoinDeps {
  storage: Storage;
  writer: RoomWriter;
  serverName: string;
  signingKey: SigningKey;
  client: Pick<FederationClient, 'get' | 'put' | 'post'>;
  keyRing: Pick<KeyRing, 'getVerifyKey'>;
}

export interface Checked {
  eventId: string;
  raw: Pdu;
}

export type RemoteMembership = 'join' | 'knock' | 'leave';

const enc = encodeURIComponent;

/** `[id, {sha256}]` references (room versions 1 and 2) or ids, as ids plus their reference hashes. */
function references(refs: unknown): { ids: string[]; hashes: Map<string, string> } {
  const ids: string[] = [];
  const hashes = new Map<string, string>();
  for (const r of Array.isArray(refs) ? refs : []) {
    if (typeof r === 'string') ids.push(r);
    else if (Array.isArray(r) && typeof r[0] === 'string') {
      ids.push(r[0]);
      const h = (r[1] as { sha256?: unknown } | undefined)?.sha256;
      if (typeof h === 'string') hashes.set(r[0], h);
    }
  }
  return { ids, hashes };
}

/**
 * The membership event built from a make_* template: the template must be the `membership` of `userId` in `roomId`
 * (else undefined: a malformed answer); our content (plus `join_authorised_via_users_server` as the resident server
 * gave it, for a restricted join), a fresh timestamp, hashed and signed.
 */
export function buildFromTemplate(
  deps: Pick<RemoteJoinDeps, 'serverName' | 'signingKey'>,
  version: RoomVersion,
  roomId: string,
  userId: string,
  membership: RemoteMembership,
  template: JsonObject,
  content: JsonObject,
): Checked | undefined {
  const tc = (template.content ?? {}) as JsonObject;
  if (
    template.type !== 'm.room.member' ||
    template.state_key !== userId ||
    template.sender !== userId ||
    (template.room_id !== undefined && template.room_id !== roomId) ||
    (tc.membership !== undefined && tc.membership !== membership)
  )
    return undefined;
  const prev = references(template.prev_events);
  const auth = references(template.auth_events);
  const via = tc.join_authorised_via_users_server;
  const legacy = version.eventIdFormat === 'v1';
  const built = buildEvent(
    {
      type: 'm.room.member',
      state_key: userId,
      sender: userId,
      room_id: roomId,
      content: {
        ...content,
        membership,
        ...(membership === 'join' && typeof via === 'string'
          ? { join_authorised_via_users_server: via }
          : {}),
      },
      prev_events: prev.ids,
      auth_events: auth.ids,
      depth: typeof template.depth === 'number' ? template.depth : 1,
      origin_server_ts: Date.now(),
      ...(legacy
        ? {
            event_id: `$${randomBytes(18).toString('base64url')}:${deps.serverName}`,
            reference_hashes: new Map([...prev.hashes, ...auth.hashes]),
          }
        : {}),
    },
    {
      roomVersion: version,
      serverName: deps.serverName,
      keyId: deps.signingKey.keyId,
      seed: deps.signingKey.seed,
    },
  );
  return { eventId: built.eventId, raw: built.pdu };
}

/** Errcodes of a refusal after which the next candidate server is asked. */
const TRY_NEXT = new Set(['M_UNABLE_TO_AUTHORISE_JOIN', 'M_UNABLE_TO_GRANT_JOIN', 'M_NOT_FOUND']);
/** Refusals relayed to the client as they came. */
const RELAYED = new Set<string>(['M_FORBIDDEN', 'M_NOT_FOUND', 'M_INCOMPATIBLE_ROOM_VERSION']);

export interface Handshake {
  server: string;
  version: RoomVersion;
  event: Checked;
  /** The body of the send_* answer. */
  answer: unknown;
}

/**
 * make_<membership> then send_<membership> (v2 for joins and leaves, v1 for knocks) with the first of `servers` that
 * answers. A malformed template or a server error moves to the next server, as do M_NOT_FOUND and the restricted
 * join refusals (M_UNABLE_TO_AUTHORISE_JOIN, M_UNABLE_TO_GRANT_JOIN); any other refusal stops and is relayed.
 */
export async function handshake(
  deps: RemoteJoinDeps,
  membership: RemoteMembership,
  roomId: string,
  userId: string,
  servers: readonly string[],
  content: JsonObject,
): Promise<Handshake> {
  const versions = [...ROOM_VERSIONS.keys()];
  const sendVersion = membership === 'knock' ? 'v1' : 'v2';
  let lastError: unknown;
  for (const server of servers) {
    try {
      const made = await deps.client.get(
        server,
        `/_matrix/federation/v1/make_${membership}/${enc(roomId)}/${enc(userId)}`,
        membership === 'leave' ? {} : { query: { ver: versions } },
      );
      const body = (made.body ?? {}) as { room_version?: unknown; event?: unknown };
      const version =
        typeof body.room_version === 'string'
          ? findRoomVersion(body.room_version)
          : membership === 'leave'
            ? findRoomVersion('1')
            : undefined;
      const template =
        typeof body.event === 'object' && body.event !== null ? (body.event as JsonObject) : {};
      const event =
        version && buildFromTemplate(deps, version, roomId, userId, membership, template, content);
      if (!version || !event) {
        lastError = new MatrixError(
          'M_UNKNOWN',
          `${server} answered make_${membership} without a usable template`,
          {},
          502,
        );
        continue;
      }
      const sent = await deps.client.put(
        server,
        `/_matrix/federation/${sendVersion}/send_${membership}/${enc(roomId)}/${enc(event.eventId)}`,
        event.raw,
      );
      return { server, version, event, answer: sent.body };
    } catch (err) {
      lastError = err;
      if (!(err instanceof FederationError) || err.status === undefined || err.status >= 500) continue;
      if (TRY_NEXT.has(err.errcode ?? '')) continue;
      break;
    }
  }
  throw relayed(lastError, membership, roomId);
}

/** The client's error for the last refusal (or 502 when no server could be reached). */
function relayed(err: unknown, membership: RemoteMembership, roomId: string): MatrixError {
  if (err instanceof MatrixError) return err;
  if (err instanceof FederationError && err.status !== undefined && err.status < 500) {
    const body = (err.body ?? {}) as { error?: unknown; room_version?: unknown };
    const message = typeof body.error === 'string' ? body.error : `Cannot ${membership} ${roomId}`;
    const errcode = err.errcode ?? '';
    if (errcode === 'M_INCOMPATIBLE_ROOM_VERSION')
      return new MatrixError('M_INCOMPATIBLE_ROOM_VERSION', message, {
        ...(typeof body.room_version === 'string' ? { room_version: body.room_version } : {}),
      });
    if (RELAYED.has(errcode)) return new MatrixError(errcode as ErrCode, message);
    return new MatrixError('M_FORBIDDEN', `The resident server refused the ${membership}: ${message}`);
  }
  return new MatrixError('M_UNKNOWN', `No server could be reached to ${membership} ${roomId}`, {}, 502);
}
