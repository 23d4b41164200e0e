/**
 * POST /_hearth/admin/v1/doctor {"repair": bool, "room_id"?: string}: the doctor on the live database. Each room is
 * checked and repaired inside the writer's queue for that room, so a repair never interleaves with a write; the
 * writer's head, the reader's caches and what the room change cache knows are dropped for every repaired room.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { sampleCaches } from '../../integrity/cache-check.js';
import { runDoctor, UnknownRoomError } from '../../integrity/doctor.js';
import { mediaProblems } from '../../media/doctor.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody } from '../validate.js';

const Body = z.looseObject({ repair: z.boolean().optional(), room_id: z.string().optional() });

export function doctorAdminRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'auth' | 'storage' | 'writer' | 'reader' | 'media' | 'appServices' | 'roomChanges'>,
): void {
  const { storage, writer, reader, roomChanges } = deps;
  let running: Promise<unknown> | undefined;

  /** POST /_hearth/admin/v1/doctor */
  app.post('/_hearth/admin/v1/doctor', { preHandler: deps.auth.requireAdmin }, async (req) => {
    const body = parseBody(Body, req.body ?? {});
    if (running) throw new MatrixError('M_UNKNOWN', 'the doctor is already running', {}, 409);
    const run = runDoctor(storage, {
      repair: body.repair ?? false,
      ...(body.room_id !== undefined ? { roomId: body.room_id } : {}),
      exclusive: (roomId, fn) => writer.runExclusive(roomId, fn),
      afterRoomRepair: (roomId) => {
        writer.invalidate(roomId);
        reader.events.clear();
        reader.snapshots.clear();
        // A repair may give events new stream positions without a commit the change cache hears of.
        roomChanges.forgetRoom(roomId, storage.stream.current);
      },
      sampleCaches: () => sampleCaches({ storage, reader, writer }),
      extraChecks: (repair) => mediaProblems(deps.media, repair, { storage, log: req.log }),
      // Queue rows of a service no longer configured are reported (and deleted on repair), as the CLI doctor does.
      ...(deps.appServices ? { appServiceIds: deps.appServices.all().map((a) => a.id) } : {}),
    });
    running = run;
    try {
      const report = await run;
      return {
        clean: report.remaining.length === 0,
        repaired: report.repaired,
        rooms_checked: report.roomsChecked,
        events_quarantined: report.eventsQuarantined,
        rows_quarantined: report.rowsQuarantined,
        rooms_rebuilt: report.roomsRebuilt,
        duration_ms: report.durationMs,
        problems: report.problems.map(toJson),
        remaining: report.remaining.map(toJson),
      };
    } catch (err) {
      if (err instanceof UnknownRoomError) throw new MatrixError('M_NOT_FOUND', err.message);
      throw err;
    } finally {
      running = undefined;
    }
  });
}

const toJson = (p: { kind: string; roomId: string | null; eventId: string | null; detail: string }) => ({
  kind: p.kind,
  room_id: p.roomId,
  event_id: p.eventId,
  detail: p.detail,
});
