/**
 * Another server's room directory over federation (server-server API "Public Room Directory"): GET and POST
 * /_matrix/federation/v1/publicRooms for the client /publicRooms with `server=`. The answer is checked and its
 * room summaries are kept field by field (a summary missing a required field is dropped), so a client only ever
 * sees the shape the spec promises. Also the errors a client gets when the remote refuses or cannot be reached.
 */
import { MatrixError, type ErrCode } from '../api/errors.js';
import type { RoomSummary } from '../roomsvc/room-summary.js';
import { isJsonObject } from '../util/validate.js';
import { FederationDeniedError, FederationError, type FederationClient } from './client.js';

/** Largest answer read from another server's directory or hierarchy. */
export const DIRECTORY_MAX_BYTES = 5 * 1024 * 1024;

export interface RemotePublicRoomsRequest {
  limit?: number | undefined;
  since?: string | undefined;
  filter?:
    { generic_search_term?: string | undefined; room_types?: (string | null)[] | undefined } | undefined;
  include_all_networks?: boolean | undefined;
  third_party_instance_id?: string | undefined;
}

/** A summary from another server: the directory's fields, and the hierarchy's when it sent them. */
export type RemoteRoomSummary = RoomSummary & {
  room_version?: string;
  encryption?: string;
  allowed_room_ids?: string[];
};

export interface RemotePublicRooms {
  chunk: RemoteRoomSummary[];
  next_batch?: string;
  prev_batch?: string;
  total_room_count_estimate?: number;
}

const STRING_FIELDS = [
  'name',
  'topic',
  'canonical_alias',
  'avatar_url',
  'join_rule',
  'room_type',
  'room_version',
  'encryption',
] as const;

/**
 * A room summary (PublicRoomsChunk, or the hierarchy's RoomSummary) from another server, with only the spec's
 * fields of the right types; undefined when room_id, num_joined_members, world_readable or guest_can_join is
 * missing or wrong.
 */
export function checkedSummary(value: unknown): RemoteRoomSummary | undefined {
  if (!isJsonObject(value)) return undefined;
  const { room_id, num_joined_members, world_readable, guest_can_join } = value;
  if (typeof room_id !== 'string' || !room_id.startsWith('!')) return undefined;
  if (typeof num_joined_members !== 'number' || !Number.isSafeInteger(num_joined_members)) return undefined;
  if (num_joined_members < 0 || typeof world_readable !== 'boolean' || typeof guest_can_join !== 'boolean')
    return undefined;
  const out: RemoteRoomSummary = { room_id, num_joined_members, world_readable, guest_can_join };
  for (const f of STRING_FIELDS) {
    const v = value[f];
    if (typeof v === 'string') out[f] = v;
  }
  const allowed = value.allowed_room_ids;
  if (Array.isArray(allowed))
    out.allowed_room_ids = allowed.filter((r): r is string => typeof r === 'string');
  return out;
}

/**
 * The client's error for a failed request to `server`: 403 when federation_domain_whitelist refuses it, its 4xx as
 * it answered, otherwise 502 (as Synapse answers).
 */
export function remoteFailure(server: string, what: string, err: unknown): MatrixError {
  if (err instanceof FederationDeniedError)
    return new MatrixError('M_FORBIDDEN', `Federation denied with ${server}: ${err.message}`);
  if (err instanceof FederationError && err.status !== undefined && err.status >= 400 && err.status < 500) {
    const code = err.errcode;
    const errcode = (code && /^M_[A-Z_]{1,64}$/.test(code) ? code : 'M_UNKNOWN') as ErrCode;
    return new MatrixError(errcode, `${server} refused ${what}: ${err.message}`, {}, err.status);
  }
  const reason = err instanceof Error ? err.message : String(err);
  return new MatrixError('M_UNKNOWN', `Failed to fetch ${what} from ${server}: ${reason}`, {}, 502);
}

/** The public rooms of `server`: GET without a filter, POST with one (as Synapse asks). */
export async function remotePublicRooms(
  client: Pick<FederationClient, 'get' | 'post'>,
  server: string,
  req: RemotePublicRoomsRequest,
): Promise<RemotePublicRooms> {
  const path = '/_matrix/federation/v1/publicRooms';
  let body: unknown;
  try {
    if (req.filter === undefined) {
      const query: Record<string, string> = {};
      if (req.limit !== undefined) query.limit = String(req.limit);
      if (req.since !== undefined) query.since = req.since;
      if (req.include_all_networks !== undefined)
        query.include_all_networks = String(req.include_all_networks);
      if (req.third_party_instance_id !== undefined)
        query.third_party_instance_id = req.third_party_instance_id;
      body = (await client.get(server, path, { query, maxBytes: DIRECTORY_MAX_BYTES })).body;
    } else {
      body = (await client.post(server, path, req, { maxBytes: DIRECTORY_MAX_BYTES })).body;
    }
  } catch (err) {
    throw remoteFailure(server, 'the room directory', err);
  }
  if (!isJsonObject(body) || !Array.isArray(body.chunk))
    throw remoteFailure(server, 'the room directory', new Error('the answer has no chunk'));
  const out: RemotePublicRooms = { chunk: [] };
  for (const entry of body.chunk) {
    const summary = checkedSummary(entry);
    if (summary) out.chunk.push(summary);
  }
  if (typeof body.next_batch === 'string') out.next_batch = body.next_batch;
  if (typeof body.prev_batch === 'string') out.prev_batch = body.prev_batch;
  const total = body.total_room_count_estimate;
  if (typeof total === 'number' && Number.isSafeInteger(total) && total >= 0)
    out.total_room_count_estimate = total;
  return out;
}
