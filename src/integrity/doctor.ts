/**
 * `hearth doctor`: checks every invariant the schema relies on, room by room, then across rooms; with `repair`,
 * fixes what it found (quarantine, rebuild, drop dangling rows into quarantine) and checks again. Offline it runs on
 * a stopped server's database; online every room is checked and repaired inside the writer's per-room queue, and
 * the caller clears its caches for each repaired room.
 */
import type { Storage } from '../storage/db.js';
import {
  danglingDeviceRows,
  danglingTxnIds,
  deviceTables,
  openDamageReports,
  resolveDamageReports,
  streamOrderingProblems,
} from './global-check.js';
import { countByKind, integrityCounters, type Problem } from './problems.js';
import { analyzeRoom, type RoomRef } from './room-check.js';
import { outboxProblems } from './queue-check.js';
import { appserviceProblems } from './appservice-check.js';
import { repairRoom } from './room-repair.js';

export interface DoctorOptions {
  repair?: boolean;
  /** Check (and repair) only this room; the cross-room checks still run. */
  roomId?: string;
  /** A progress line every N rooms. */
  progressEvery?: number;
  onProgress?: (line: string) => void;
  /** Online: runs `fn` in the room's write queue. */
  exclusive?: <T>(roomId: string, fn: () => Promise<T>) => Promise<T>;
  /** Online: called after a room was repaired (drop cached heads, events, snapshots). */
  afterRoomRepair?: (roomId: string) => void;
  /** Online: extra checks of in-memory caches. */
  sampleCaches?: () => Promise<Problem[]>;
  /** Checks outside the database (the media store), run with the cross-room checks. */
  extraChecks?: (repair: boolean) => Promise<Problem[]>;
  /** The configured application service ids: queue rows of any other service are reported (and deleted). */
  appServiceIds?: readonly string[];
}

export interface DoctorReport {
  /** Problems found (before any repair). */
  problems: Problem[];
  /** With repair: problems still found by the check after the repair (empty when everything was fixed). */
  remaining: Problem[];
  repaired: boolean;
  roomsChecked: number;
  eventsQuarantined: number;
  rowsQuarantined: number;
  roomsRebuilt: number;
  durationMs: number;
}

export class UnknownRoomError extends Error {
  constructor(roomId: string) {
    super(`room ${roomId} is not known to this server`);
    this.name = 'UnknownRoomError';
  }
}

async function listRooms(storage: Storage, roomId?: string): Promise<RoomRef[]> {
  let q = storage.db
    .selectFrom('rooms')
    .select(['room_nid', 'room_id', 'room_version', 'current_snapshot_nid']);
  if (roomId !== undefined) q = q.where('room_id', '=', roomId);
  const rows = await q.orderBy('room_nid').execute();
  if (roomId !== undefined && rows.length === 0) throw new UnknownRoomError(roomId);
  return rows.map((r) => ({
    nid: Number(r.room_nid),
    id: r.room_id,
    version: r.room_version,
    currentSnapshotNid: r.current_snapshot_nid === null ? null : Number(r.current_snapshot_nid),
  }));
}

async function pass(
  storage: Storage,
  opts: DoctorOptions,
  repair: boolean,
): Promise<Omit<DoctorReport, 'remaining' | 'repaired' | 'durationMs'>> {
  const exclusive = opts.exclusive ?? (<T>(_roomId: string, fn: () => Promise<T>) => fn());
  const problems: Problem[] = [];
  let eventsQuarantined = 0;
  let rowsQuarantined = 0;
  let roomsRebuilt = 0;
  const stream = await streamOrderingProblems(storage.db);
  const rooms = await listRooms(storage, opts.roomId);
  const every = opts.progressEvery ?? 100;
  let done = 0;
  for (const listed of rooms) {
    await exclusive(listed.id, async () => {
      // Re-read the room row inside the queue: a write may have moved its current snapshot.
      const [room] = await listRooms(storage, listed.id);
      if (!room) return;
      const a = await analyzeRoom(storage.db, storage.engine, room);
      const streamProblems = stream.byRoom.get(room.nid) ?? [];
      a.problems.push(...streamProblems);
      problems.push(...a.problems);
      if (!repair || a.problems.length === 0) return;
      const result = await storage.db.transaction().execute((trx) =>
        repairRoom(trx, storage.engine, a, {
          nids: stream.nids,
          allocate: () => {
            const pos = storage.stream.allocate();
            storage.stream.finish(pos);
            return pos;
          },
        }),
      );
      eventsQuarantined += result.quarantined;
      if (result.rebuilt) roomsRebuilt++;
      opts.afterRoomRepair?.(room.id);
    });
    done++;
    if (opts.onProgress && done % every === 0) {
      opts.onProgress(`doctor: ${done}/${rooms.length} rooms checked, ${problems.length} problems so far`);
    }
  }
  const tables = await deviceTables(storage.db);
  const txn = await storage.db.transaction().execute(async (trx) => {
    const found = await danglingTxnIds(trx, repair ? trx : undefined);
    const devices = await danglingDeviceRows(tables, trx, repair ? trx : undefined);
    const outbox = await outboxProblems(trx, repair ? trx : undefined);
    const appservices = await appserviceProblems(
      trx,
      repair ? trx : undefined,
      storage.stream.current,
      opts.appServiceIds ? new Set(opts.appServiceIds) : undefined,
    );
    return [...found, ...devices, ...outbox, ...appservices];
  });
  problems.push(...txn);
  if (repair) rowsQuarantined += txn.length;

  const damage = await openDamageReports(storage.db, opts.roomId);
  problems.push(...damage);
  if (repair && damage.length) await resolveDamageReports(storage.db, opts.roomId);

  if (opts.extraChecks && opts.roomId === undefined) problems.push(...(await opts.extraChecks(repair)));

  if (opts.sampleCaches) {
    const mismatches = await opts.sampleCaches();
    integrityCounters.cacheMismatchesTotal += mismatches.length;
    problems.push(...mismatches);
    if (repair && mismatches.length) for (const r of rooms) opts.afterRoomRepair?.(r.id);
  }
  return { problems, roomsChecked: rooms.length, eventsQuarantined, rowsQuarantined, roomsRebuilt };
}

export async function runDoctor(storage: Storage, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const started = Date.now();
  const first = await pass(storage, opts, opts.repair ?? false);
  integrityCounters.doctorRunsTotal++;
  integrityCounters.lastRunProblems = countByKind(first.problems);
  integrityCounters.lastRunTs = Date.now();
  integrityCounters.eventsQuarantinedTotal += first.eventsQuarantined;
  integrityCounters.rowsQuarantinedTotal += first.rowsQuarantined;
  let remaining = first.problems;
  if (opts.repair) {
    const again = await pass(storage, { ...opts, onProgress: undefined }, false);
    remaining = again.problems;
  }
  return { ...first, remaining, repaired: opts.repair ?? false, durationMs: Date.now() - started };
}
