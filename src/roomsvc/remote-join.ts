/**
 * Joining a room this server is not in, over federation (server-server API "Joining Rooms"): make_join to a resident
 * server (each candidate in turn), the template completed, hashed and signed, send_join v2, then the answer checked
 * (every state and auth chain event: format, signatures, hash, its own auth events; the join event against the
 * returned state) and persisted by the room writer in one transaction (joined-room.ts).
 */
import { MatrixError } from '../api/errors.js';
import { FederationError } from '../federation/client.js';
import { checkOutlierBatch, ingestRemotePdus } from '../federation/ingest.js';
import { checkReceivedPdu } from '../federation/pdu-checks.js';
import { forRules } from '../input/state-at.js';
import { checkEventAuth } from '../rooms/auth/check.js';
import type { JsonObject, Pdu } from '../rooms/event.js';
import { serverNameOf } from '../rooms/identifiers.js';
import type { RoomVersion } from '../rooms/room-versions.js';
import { stateKey } from '../storage/state.js';
import { memberContent } from './create-room.js';
import { handshake, type Checked, type RemoteJoinDeps } from './remote-membership.js';

export type { RemoteJoinDeps } from './remote-membership.js';

const enc = encodeURIComponent;

async function checkAll(deps: RemoteJoinDeps, list: unknown, version: RoomVersion): Promise<Checked[]> {
  const out: Checked[] = [];
  for (const e of Array.isArray(list) ? list : []) {
    if (typeof e !== 'object' || e === null) continue;
    const c = await checkReceivedPdu(deps.keyRing, e as JsonObject, version);
    if (c.ok) out.push({ eventId: c.eventId, raw: c.raw });
  }
  return out;
}

/**
 * Joins `userId` to `roomId` through the first of `servers` that answers (a restricted room's template names the
 * resident user authorising the join; a server that cannot authorise or grant it is skipped); returns the room id.
 */
export async function joinOverFederation(
  deps: RemoteJoinDeps,
  roomId: string,
  userId: string,
  servers: readonly string[],
  extra: JsonObject = {},
): Promise<string> {
  const content = await memberContent(deps.storage, userId, 'join', extra);
  const done = await handshake(deps, 'join', roomId, userId, servers, content);
  await persistJoin(deps, roomId, done.version, done.event, done.answer, done.server);
  return roomId;
}

/**
 * A restricted join to a room this server is in but cannot authorise (no local user may invite, or it knows none of
 * the allowed rooms): the handshake with a resident server that can, then the join it countersigned taken in like
 * any event from that server (missing prev events fetched). The resident server sends it to the room's other servers.
 */
export async function joinAuthorisedElsewhere(
  deps: RemoteJoinDeps,
  roomId: string,
  userId: string,
  servers: readonly string[],
  extra: JsonObject = {},
): Promise<string> {
  const content = await memberContent(deps.storage, userId, 'join', extra);
  const done = await handshake(deps, 'join', roomId, userId, servers, content);
  const event = (done.answer as { event?: unknown } | undefined)?.event;
  if (typeof event !== 'object' || event === null || Array.isArray(event))
    throw new MatrixError('M_UNKNOWN', `${done.server} answered send_join without the signed join`, {}, 502);
  const results = await ingestRemotePdus(deps, done.server, [event as JsonObject]);
  const error = results[done.event.eventId]?.error;
  if (!(done.event.eventId in results) || error !== undefined)
    throw new MatrixError(
      'M_FORBIDDEN',
      `The join signed by ${done.server} was not accepted: ${error ?? 'another event'}`,
    );
  return roomId;
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
