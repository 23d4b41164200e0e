/**
 * Joining a room this server is not in, over federation (server-server API "Joining Rooms"): make_join to a resident
 * server (each candidate in turn), the template completed, hashed and signed, send_join v2, then the answer checked
 * (every state and auth chain event: format, signatures, hash, its own auth events; the join event against the
 * returned state) and persisted by the room writer in one transaction (joined-room.ts).
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../api/errors.js';
import { FederationError, type FederationClient } from '../federation/client.js';
import { checkOutlierBatch } from '../federation/ingest.js';
import type { KeyRing } from '../federation/keyring.js';
import { checkReceivedPdu } from '../federation/pdu-checks.js';
import type { RoomWriter } from '../input/room-writer.js';
import { forRules } from '../input/state-at.js';
import type { SigningKey } from '../keys/signing-key.js';
import { checkEventAuth } from '../rooms/auth/check.js';
import { buildEvent } from '../rooms/build.js';
import type { JsonObject, Pdu } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import { findRoomVersion, ROOM_VERSIONS, type RoomVersion } from '../rooms/room-versions.js';
import type { Storage } from '../storage/db.js';
import { stateKey } from '../storage/state.js';
import { memberContent } from './create-room.js';

export interface RemoteJoinDeps {
  storage: Storage;
  writer: RoomWriter;
  serverName: string;
  signingKey: SigningKey;
  client: Pick<FederationClient, 'get' | 'put'>;
  keyRing: Pick<KeyRing, 'getVerifyKey'>;
}

const enc = encodeURIComponent;

interface Checked {
  eventId: string;
  raw: Pdu;
}

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

/** The join event built from a make_join template: our content, a fresh timestamp, hashed and signed. */
function buildJoin(
  deps: RemoteJoinDeps,
  version: RoomVersion,
  roomId: string,
  userId: string,
  template: JsonObject,
  content: JsonObject,
): Checked {
  if (template.type !== 'm.room.member' || template.state_key !== userId || template.sender !== userId)
    throw new MatrixError('M_UNKNOWN', 'The resident server answered make_join with another event', {}, 502);
  const prev = references(template.prev_events);
  const auth = references(template.auth_events);
  const tc = (template.content ?? {}) as JsonObject;
  const via = tc.join_authorised_via_users_server;
  const legacy = version.eventIdFormat === 'v1';
  const built = buildEvent(
    {
      type: 'm.room.member',
      state_key: userId,
      sender: userId,
      room_id: roomId,
      content: { ...content, ...(typeof via === 'string' ? { join_authorised_via_users_server: via } : {}) },
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

async function checkAll(deps: RemoteJoinDeps, list: unknown, version: RoomVersion): Promise<Checked[]> {
  const out: Checked[] = [];
  for (const e of Array.isArray(list) ? list : []) {
    if (typeof e !== 'object' || e === null) continue;
    const c = await checkReceivedPdu(deps.keyRing, e as JsonObject, version);
    if (c.ok) out.push({ eventId: c.eventId, raw: c.raw });
  }
  return out;
}

/** Joins `userId` to `roomId` through the first of `servers` that answers; returns the room id. */
export async function joinOverFederation(
  deps: RemoteJoinDeps,
  roomId: string,
  userId: string,
  servers: readonly string[],
  extra: JsonObject = {},
): Promise<string> {
  const versions = [...ROOM_VERSIONS.keys()];
  let lastError: unknown;
  for (const server of servers) {
    let made;
    try {
      made = await deps.client.get(server, `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(userId)}`, {
        query: { ver: versions },
      });
    } catch (err) {
      lastError = err;
      if (err instanceof FederationError && err.status !== undefined && err.status < 500) break;
      continue;
    }
    const body = made.body as { room_version?: unknown; event?: unknown };
    const version = typeof body.room_version === 'string' ? findRoomVersion(body.room_version) : undefined;
    if (!version || typeof body.event !== 'object' || body.event === null)
      throw new MatrixError('M_UNKNOWN', `${server} answered make_join without a usable template`, {}, 502);
    const content = await memberContent(deps.storage, userId, 'join', extra);
    const join = buildJoin(deps, version, roomId, userId, body.event as JsonObject, content);
    const sent = await deps.client.put(
      server,
      `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(join.eventId)}`,
      join.raw,
    );
    await persistJoin(deps, roomId, version, join, sent.body, server);
    return roomId;
  }
  if (lastError instanceof FederationError && lastError.status !== undefined) {
    const errcode = lastError.errcode;
    const message = (lastError.body as { error?: unknown } | undefined)?.error;
    if (errcode === 'M_FORBIDDEN' || errcode === 'M_NOT_FOUND' || errcode === 'M_INCOMPATIBLE_ROOM_VERSION')
      throw new MatrixError(errcode, typeof message === 'string' ? message : `Cannot join ${roomId}`);
  }
  throw new MatrixError('M_UNKNOWN', `No server could be reached to join ${roomId}`, {}, 502);
}

/** Checks the send_join answer and hands the room to the writer. */
async function persistJoin(
  deps: RemoteJoinDeps,
  roomId: string,
  version: RoomVersion,
  join: Checked,
  answer: unknown,
  server: string,
): Promise<void> {
  const body = (answer ?? {}) as { state?: unknown; auth_chain?: unknown; event?: unknown };
  const state = await checkAll(deps, body.state, version);
  const chain = await checkAll(deps, body.auth_chain, version);
  let joinEvent = join;
  // A restricted join comes back signed by the authorising server too.
  if (typeof body.event === 'object' && body.event !== null) {
    const c = await checkReceivedPdu(deps.keyRing, body.event as JsonObject, version);
    if (c.ok && c.eventId === join.eventId && !c.redacted) joinEvent = { eventId: c.eventId, raw: c.raw };
  }
  const all = new Map<string, Checked>();
  for (const e of [...chain, ...state]) all.set(e.eventId, e);
  const outliers = checkOutlierBatch(version, roomId, [...all.values()], new Map());
  const accepted = new Map<string, Pdu>();
  for (const o of outliers) if (!o.rejectedReason) accepted.set(o.eventId, forRules(o.raw, version));
  const byKey = new Map<string, Pdu>();
  const ids = new Map<Pdu, string>();
  for (const s of state) {
    const pdu = accepted.get(s.eventId);
    if (!pdu || typeof pdu.state_key !== 'string') continue;
    byKey.set(stateKey(pdu.type, pdu.state_key), pdu);
    ids.set(pdu, s.eventId);
  }
  const create = byKey.get(stateKey('m.room.create', ''));
  const createVersion = create?.content.room_version ?? '1';
  if (!create || createVersion !== version.id)
    throw new MatrixError(
      'M_UNKNOWN',
      `${server} answered send_join with a state of another room version`,
      {},
      502,
    );
  const allowed = checkEventAuth(
    forRules(joinEvent.raw, version),
    (t, k) => byKey.get(stateKey(t, k)),
    version,
    {
      eventIdOf: (p) => ids.get(p) ?? '',
    },
  );
  if (!allowed.allowed)
    throw new MatrixError(
      'M_FORBIDDEN',
      `The state from ${server} does not allow the join: ${allowed.reason}`,
    );
  if (serverNameOf(joinEvent.raw.sender) !== deps.serverName) throw new Error('join of another server');
  await deps.writer.persistJoinedRoom({
    roomId,
    version,
    outliers,
    stateIds: state.map((s) => s.eventId),
    join: joinEvent,
  });
}

const STRIPPED = [
  'm.room.create',
  'm.room.join_rules',
  'm.room.name',
  'm.room.avatar',
  'm.room.topic',
  'm.room.canonical_alias',
  'm.room.encryption',
];

/**
 * Invites a user of another server (server-server API "Inviting to a room"): the invite is built over the current
 * state, sent with /v2/invite and the stripped room state to the invitee's server, and the event it returns
 * countersigned is persisted through the room writer (and so sent to the room's other servers).
 */
export async function inviteOverFederation(
  deps: RemoteJoinDeps,
  roomId: string,
  sender: string,
  target: string,
  content: JsonObject,
): Promise<void> {
  const server = serverNameOf(target);
  if (!server) throw new MatrixError('M_INVALID_PARAM', `Invalid user id: ${target}`);
  const head = await deps.writer.head(roomId);
  if (!head) throw new MatrixError('M_NOT_FOUND', 'Unknown room');
  const draft = await deps.writer.draft(roomId, {
    type: 'm.room.member',
    state_key: target,
    sender,
    content,
  });
  const stripped: JsonObject[] = [];
  for (const [type, key] of [...STRIPPED.map((t) => [t, '']), ['m.room.member', sender]] as [
    string,
    string,
  ][]) {
    const e = head.state.get(stateKey(type, key));
    if (e) stripped.push({ type, state_key: key, content: e.pdu.content, sender: e.pdu.sender });
  }
  let answer;
  try {
    answer = await deps.client.put(
      server,
      `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(draft.eventId)}`,
      {
        room_version: head.version.id,
        event: draft.pdu,
        invite_room_state: stripped,
      },
    );
  } catch (err) {
    if (err instanceof FederationError && err.status !== undefined && err.status < 500)
      throw new MatrixError('M_FORBIDDEN', `${server} refused the invite: ${err.message}`);
    throw new MatrixError('M_UNKNOWN', `Cannot reach ${server} to invite ${target}`, {}, 502);
  }
  const event = (answer.body as { event?: unknown } | undefined)?.event;
  if (typeof event !== 'object' || event === null)
    throw new MatrixError('M_UNKNOWN', `${server} answered the invite without the event`, {}, 502);
  const checked = await checkReceivedPdu(deps.keyRing, event as JsonObject, head.version);
  if (!checked.ok || checked.redacted || checked.eventId !== draft.eventId)
    throw new MatrixError('M_UNKNOWN', `${server} answered the invite with another event`, {}, 502);
  const outcome = await deps.writer.ingestRemote(roomId, { eventId: checked.eventId, raw: checked.raw });
  if (outcome.status !== 'accepted' && outcome.status !== 'duplicate')
    throw new MatrixError('M_FORBIDDEN', outcome.reason ?? 'The invite was not accepted');
}
