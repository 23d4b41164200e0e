/**
 * Synapse-compatible room administration: list and inspect rooms (v1/rooms, .../members, .../state), delete a
 * room (v1 synchronously; v2 in the background with status polling) and purge old history (v1/purge_history).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { clientEvent } from '../../read/event-reader.js';
import {
  deleteRoomRows,
  purgeHistoryRows,
  roomFacts,
  roomMemberIds,
  type RoomFacts,
} from '../../storage/admin-queries.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody, parseQuery } from '../validate.js';

type Deps = Pick<ApiDeps, 'config' | 'storage' | 'auth' | 'writer' | 'reader'>;

const ListQuery = z.looseObject({
  from: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(0).max(10_000).default(100),
  search_term: z.string().optional(),
  order_by: z
    .enum([
      'name',
      'alphabetical',
      'size',
      'canonical_alias',
      'joined_members',
      'joined_local_members',
      'version',
      'creator',
      'encryption',
      'federatable',
      'public',
      'join_rules',
      'guest_access',
      'history_visibility',
      'state_events',
    ])
    .default('name'),
  dir: z.enum(['f', 'b']).default('f'),
});

const DeleteBody = z.looseObject({
  new_room_user_id: z.string().optional(),
  room_name: z.string().optional(),
  message: z.string().optional(),
  block: z.boolean().default(false),
  purge: z.boolean().default(true),
  force_purge: z.boolean().default(false),
});

const PurgeBody = z.looseObject({
  delete_local_events: z.boolean().default(false),
  purge_up_to_event_id: z.string().optional(),
  purge_up_to_ts: z.number().int().optional(),
});

type RoomJson = Record<string, string | number | boolean | null>;

function str(f: RoomFacts, type: string, key: string): string | null {
  const v = f.state.get(type)?.[key];
  return typeof v === 'string' ? v : null;
}

function roomJson(f: RoomFacts): RoomJson {
  return {
    room_id: f.room_id,
    name: str(f, 'm.room.name', 'name'),
    canonical_alias: str(f, 'm.room.canonical_alias', 'alias'),
    joined_members: f.joined_members,
    // Hearth does not federate: every joined member is local.
    joined_local_members: f.joined_members,
    version: f.room_version,
    creator: f.creator,
    encryption: str(f, 'm.room.encryption', 'algorithm'),
    federatable: f.state.get('m.room.create')?.['m.federate'] !== false,
    public: f.is_public === 1,
    join_rules: str(f, 'm.room.join_rules', 'join_rule'),
    guest_access: str(f, 'm.room.guest_access', 'guest_access'),
    history_visibility: str(f, 'm.room.history_visibility', 'history_visibility'),
    state_events: f.state_events,
    room_type: str(f, 'm.room.create', 'type'),
  };
}

/** Synapse's orders; counts sort largest first going forwards. */
function compareRooms(order: string): (a: RoomJson, b: RoomJson) => number {
  const key = order === 'alphabetical' ? 'name' : order === 'size' ? 'joined_members' : order;
  const descending = ['joined_members', 'joined_local_members', 'state_events'].includes(key);
  return (a, b) => {
    const x = a[key] ?? null;
    const y = b[key] ?? null;
    let c: number;
    if (x === y) c = 0;
    else if (x === null) c = 1;
    else if (y === null) c = -1;
    else c = x < y ? -1 : 1;
    if (descending) c = -c;
    return c || (a.room_id as string).localeCompare(b.room_id as string);
  };
}

interface ShutdownResult {
  kicked_users: string[];
  failed_to_kick_users: string[];
  local_aliases: string[];
  new_room_id: null;
}

interface DeleteJob {
  delete_id: string;
  roomId: string;
  status: 'shutting_down' | 'purging' | 'complete' | 'failed';
  error?: string;
  shutdown_room: ShutdownResult;
  doneAt?: number;
}

interface PurgeJob {
  status: 'active' | 'complete' | 'failed';
  error?: string;
  doneAt?: number;
}

const JOB_TTL_MS = 24 * 3600_000;

/** Background jobs, shared by every listener of one server. */
class Jobs {
  deletes = new Map<string, DeleteJob>();
  purges = new Map<string, PurgeJob>();
  prune(now = Date.now()): void {
    for (const m of [this.deletes, this.purges] as Map<string, { doneAt?: number }>[]) {
      for (const [id, j] of m) if (j.doneAt !== undefined && now - j.doneAt > JOB_TTL_MS) m.delete(id);
    }
  }
}
const jobsByDeps = new WeakMap<object, Jobs>();

function roomIdParam(req: FastifyRequest): string {
  const roomId = (req.params as { roomId: string }).roomId;
  if (!roomId.startsWith('!')) throw new MatrixError('M_INVALID_PARAM', `${roomId} is not a legal room ID`);
  return roomId;
}

/** Makes every local member leave through the room writer, then (with purge) deletes the room's rows. */
async function shutdownRoom(
  deps: Deps,
  roomId: string,
  purge: boolean,
  job?: DeleteJob,
): Promise<ShutdownResult> {
  const result: ShutdownResult = {
    kicked_users: [],
    failed_to_kick_users: [],
    local_aliases: [],
    new_room_id: null,
  };
  const [facts] = await roomFacts(deps.storage.db, roomId);
  if (facts) {
    const members = await roomMemberIds(deps.storage.db, facts.room_nid, ['join', 'invite', 'knock']);
    for (const userId of members) {
      try {
        await deps.writer.send(roomId, {
          type: 'm.room.member',
          state_key: userId,
          sender: userId,
          content: { membership: 'leave' },
        });
        result.kicked_users.push(userId);
      } catch {
        result.failed_to_kick_users.push(userId);
      }
    }
  }
  if (job) job.status = 'purging';
  if (purge) {
    result.local_aliases = await deleteRoomRows(deps.storage.db, deps.storage.engine, roomId);
    deps.writer.invalidate(roomId);
    deps.reader.events.clear();
    deps.reader.snapshots.clear();
  }
  return result;
}

export function adminRoomRoutes(app: FastifyInstance, deps: Deps): void {
  const { storage } = deps;
  const guard = { preHandler: deps.auth.requireAdmin };
  let jobs = jobsByDeps.get(deps);
  if (!jobs) jobsByDeps.set(deps, (jobs = new Jobs()));
  const j = jobs;

  const factsOr404 = async (roomId: string): Promise<RoomFacts> => {
    const [f] = await roomFacts(storage.db, roomId);
    if (!f) throw new MatrixError('M_NOT_FOUND', 'Room not found');
    return f;
  };

  /** GET /_synapse/admin/v1/rooms */
  app.get('/_synapse/admin/v1/rooms', guard, async (req) => {
    const q = parseQuery(ListQuery, req.query);
    let rooms = (await roomFacts(storage.db)).map(roomJson);
    if (q.search_term) {
      const term = q.search_term.toLowerCase();
      rooms = rooms.filter(
        (r) =>
          r.room_id === q.search_term ||
          (typeof r.name === 'string' && r.name.toLowerCase().includes(term)) ||
          (typeof r.canonical_alias === 'string' && r.canonical_alias.toLowerCase().includes(term)),
      );
    }
    rooms.sort(compareRooms(q.order_by));
    if (q.dir === 'b') rooms.reverse();
    const page = rooms.slice(q.from, q.from + q.limit);
    const next = q.from + page.length;
    return {
      rooms: page,
      offset: q.from,
      total_rooms: rooms.length,
      ...(next < rooms.length ? { next_batch: next } : {}),
      ...(q.from > 0 ? { prev_batch: Math.max(0, q.from - q.limit) } : {}),
    };
  });

  /** GET /_synapse/admin/v1/rooms/{roomId} */
  app.get('/_synapse/admin/v1/rooms/:roomId', guard, async (req) => {
    const f = await factsOr404(roomIdParam(req));
    const joined = await roomMemberIds(storage.db, f.room_nid, ['join']);
    const devices = joined.length
      ? await storage.db
          .selectFrom('devices')
          .select((eb) => eb.fn.countAll().as('n'))
          .where('user_id', 'in', joined)
          .executeTakeFirst()
      : undefined;
    return {
      ...roomJson(f),
      avatar: str(f, 'm.room.avatar', 'url'),
      topic: str(f, 'm.room.topic', 'topic'),
      joined_local_devices: Number(devices?.n ?? 0),
      forgotten: false,
    };
  });

  /** GET /_synapse/admin/v1/rooms/{roomId}/members */
  app.get('/_synapse/admin/v1/rooms/:roomId/members', guard, async (req) => {
    const f = await factsOr404(roomIdParam(req));
    const members = await roomMemberIds(storage.db, f.room_nid, ['join']);
    return { members, total: members.length };
  });

  /** GET /_synapse/admin/v1/rooms/{roomId}/state */
  app.get('/_synapse/admin/v1/rooms/:roomId/state', guard, async (req) => {
    const f = await factsOr404(roomIdParam(req));
    const rows = await storage.db
      .selectFrom('current_state')
      .select('event_nid')
      .where('room_nid', '=', f.room_nid)
      .execute();
    const events = await deps.reader.listByNids(rows.map((r) => Number(r.event_nid)));
    const now = Date.now();
    return { state: events.map((e) => clientEvent(e, { now })) };
  });

  const deleteBody = (req: FastifyRequest) => {
    const body = parseBody(DeleteBody, req.body ?? {});
    if (body.new_room_user_id !== undefined) {
      throw new MatrixError('M_UNKNOWN', 'new_room_user_id is not supported by Hearth', {}, 400);
    }
    return body;
  };

  /** DELETE /_synapse/admin/v1/rooms/{roomId}: synchronous shutdown and purge. */
  app.delete('/_synapse/admin/v1/rooms/:roomId', guard, async (req) => {
    const roomId = roomIdParam(req);
    const body = deleteBody(req);
    return shutdownRoom(deps, roomId, body.purge);
  });

  /** DELETE /_synapse/admin/v2/rooms/{roomId}: the same in the background; returns a delete_id to poll. */
  app.delete('/_synapse/admin/v2/rooms/:roomId', guard, async (req) => {
    const roomId = roomIdParam(req);
    const body = deleteBody(req);
    j.prune();
    for (const job of j.deletes.values()) {
      if (job.roomId === roomId && (job.status === 'shutting_down' || job.status === 'purging')) {
        throw new MatrixError('M_UNKNOWN', `History purge already in progress for ${roomId}`, {}, 400);
      }
    }
    const job: DeleteJob = {
      delete_id: randomBytes(12).toString('base64url'),
      roomId,
      status: 'shutting_down',
      shutdown_room: { kicked_users: [], failed_to_kick_users: [], local_aliases: [], new_room_id: null },
    };
    j.deletes.set(job.delete_id, job);
    void shutdownRoom(deps, roomId, body.purge, job).then(
      (r) => {
        job.shutdown_room = r;
        job.status = 'complete';
        job.doneAt = Date.now();
      },
      (err: unknown) => {
        job.status = 'failed';
        job.error = (err as Error).message;
        job.doneAt = Date.now();
        req.log.error({ err, room_id: roomId }, 'room deletion failed');
      },
    );
    return { delete_id: job.delete_id };
  });

  const jobJson = (job: DeleteJob) => ({
    delete_id: job.delete_id,
    status: job.status,
    ...(job.error ? { error: job.error } : {}),
    shutdown_room: job.shutdown_room,
  });

  /** GET /_synapse/admin/v2/rooms/{roomId}/delete_status */
  app.get('/_synapse/admin/v2/rooms/:roomId/delete_status', guard, async (req) => {
    const roomId = roomIdParam(req);
    const results = [...j.deletes.values()].filter((d) => d.roomId === roomId).map(jobJson);
    if (results.length === 0) throw new MatrixError('M_NOT_FOUND', 'No delete task for room');
    return { results };
  });

  /** GET /_synapse/admin/v2/rooms/delete_status/{deleteId} */
  app.get('/_synapse/admin/v2/rooms/delete_status/:deleteId', guard, async (req) => {
    const job = j.deletes.get((req.params as { deleteId: string }).deleteId);
    if (!job) throw new MatrixError('M_NOT_FOUND', 'delete id not found');
    const { delete_id: _id, ...rest } = jobJson(job);
    return rest;
  });

  const purge = async (req: FastifyRequest, pathEventId: string | undefined) => {
    const roomId = roomIdParam(req);
    const body = parseBody(PurgeBody, req.body ?? {});
    const f = await factsOr404(roomId);
    const eventId = pathEventId ?? body.purge_up_to_event_id;
    let beforeStream: number | undefined;
    if (eventId !== undefined) {
      const ev = await storage.db
        .selectFrom('events')
        .select(['stream_ordering', 'room_nid'])
        .where('event_id', '=', eventId)
        .executeTakeFirst();
      if (!ev || Number(ev.room_nid) !== f.room_nid || ev.stream_ordering === null) {
        throw new MatrixError('M_NOT_FOUND', 'Event not found in this room');
      }
      beforeStream = Number(ev.stream_ordering);
    } else if (body.purge_up_to_ts === undefined) {
      throw new MatrixError('M_UNKNOWN', 'must specify purge_up_to_event_id or purge_up_to_ts', {}, 400);
    }
    const purgeId = randomBytes(12).toString('base64url');
    const job: PurgeJob = { status: 'active' };
    j.prune();
    j.purges.set(purgeId, job);
    void purgeHistoryRows(storage.db, storage.engine, {
      roomNid: f.room_nid,
      beforeStream,
      beforeTs: eventId === undefined ? body.purge_up_to_ts : undefined,
      deleteLocalEvents: body.delete_local_events,
      serverName: deps.config.server_name,
    }).then(
      () => {
        deps.reader.events.clear();
        job.status = 'complete';
        job.doneAt = Date.now();
      },
      (err: unknown) => {
        job.status = 'failed';
        job.error = (err as Error).message;
        job.doneAt = Date.now();
        req.log.error({ err, room_id: roomId }, 'history purge failed');
      },
    );
    return { purge_id: purgeId };
  };

  /** POST /_synapse/admin/v1/purge_history/{roomId} */
  app.post('/_synapse/admin/v1/purge_history/:roomId', guard, async (req) => purge(req, undefined));
  /** POST /_synapse/admin/v1/purge_history/{roomId}/{eventId} */
  app.post('/_synapse/admin/v1/purge_history/:roomId/:eventId', guard, async (req) =>
    purge(req, (req.params as { eventId: string }).eventId),
  );

  /** GET /_synapse/admin/v1/purge_history_status/{purgeId} */
  app.get('/_synapse/admin/v1/purge_history_status/:purgeId', guard, async (req) => {
    const job = j.purges.get((req.params as { purgeId: string }).purgeId);
    if (!job) throw new MatrixError('M_NOT_FOUND', 'purge id not found');
    return { status: job.status, ...(job.error ? { error: job.error } : {}) };
  });
}
