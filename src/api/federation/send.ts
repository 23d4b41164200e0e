/**
 * PUT /_matrix/federation/v1/send/{txnId}: a transaction from another server. At most 50 PDUs and 100 EDUs (else
 * 400, as Synapse). Transactions of one origin are processed one at a time, and the answer to each is kept, so a
 * retried transaction gets the same answer without being processed again. PDUs go to the ingestion function with a
 * result per event; EDUs to federation/inbound-edus.ts.
 */
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import { handleEdus, type InboundEduDeps } from '../../federation/inbound-edus.js';
import type { JsonObject } from '../../rooms/event.js';
import { computeEventId } from '../../rooms/hashing.js';
import { getRoomVersion } from '../../rooms/room-versions.js';
import { getReceivedTxn, pruneReceivedTxns, putReceivedTxn } from '../../storage/federation-queue.js';
import { KeyedQueue } from '../../util/keyed-queue.js';
import { isJsonObject, parseBody, parseParams } from '../../util/validate.js';
import { MatrixError } from '../errors.js';

export const MAX_PDUS = 50;
export const MAX_EDUS = 100;
/** How long a received transaction's answer (and a to-device message id) is remembered. */
const REMEMBER_MS = 24 * 60 * 60 * 1000;
const PRUNE_EVERY_MS = 60 * 60 * 1000;
/**
 * A transaction may carry 50 PDUs of up to 64 KiB each plus 100 EDUs (to-device batches can be large): far more than
 * a client request, so /send has its own body limit instead of max_json_body_size.
 */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

/** The result of one PDU of a transaction: {} when accepted, `error` when not. */
export type PduResult = { error?: string };

/** Ingests a transaction's PDUs (the room writer's remote input); returns a result per event id. */
export type PduIngest = (origin: string, pdus: JsonObject[]) => Promise<Record<string, PduResult>>;

export interface SendRoutesDeps extends InboundEduDeps {
  authenticate: preHandlerAsyncHookHandler;
  /** Absent until the writer accepts remote events: each PDU is then answered with an error. */
  ingestPdus?: PduIngest | undefined;
}

const Params = z.object({ txnId: z.string().min(1) });
const Body = z.looseObject({
  origin: z.string().optional(),
  origin_server_ts: z.number().optional(),
  pdus: z.array(z.unknown()),
  edus: z.array(z.unknown()).optional(),
});

export function sendRoutes(app: FastifyInstance, deps: SendRoutesDeps): void {
  const perOrigin = new KeyedQueue();
  let lastPrune = 0;
  app.put(
    '/_matrix/federation/v1/send/:txnId',
    { preHandler: deps.authenticate, bodyLimit: MAX_BODY_BYTES },
    async (req) => {
      const origin = req.federationOrigin;
      const { txnId } = parseParams(Params, req.params);
      const body = parseBody(Body, req.body);
      if (body.origin !== undefined && body.origin !== origin)
        throw new MatrixError(
          'M_FORBIDDEN',
          `Transaction origin ${body.origin} is not the requesting server`,
        );
      const edus = body.edus ?? [];
      if (body.pdus.length > MAX_PDUS || edus.length > MAX_EDUS)
        throw new MatrixError(
          'M_BAD_JSON',
          `A transaction carries at most ${MAX_PDUS} PDUs and ${MAX_EDUS} EDUs (got ${body.pdus.length} and ${edus.length})`,
        );
      return perOrigin.run(origin, async () => {
        const { db } = deps.storage;
        const seen = await getReceivedTxn(db, origin, txnId);
        if (seen !== undefined) return JSON.parse(seen) as unknown;
        const pdus = body.pdus.filter(isJsonObject);
        const results = deps.ingestPdus ? await deps.ingestPdus(origin, pdus) : await refuseAll(deps, pdus);
        await handleEdus(
          deps,
          origin,
          edus.filter(isJsonObject).map((e) => ({ edu_type: String(e.edu_type), content: e.content })),
        );
        const response = { pdus: results };
        const now = Date.now();
        await putReceivedTxn(db, origin, txnId, JSON.stringify(response), now);
        if (now - lastPrune > PRUNE_EVERY_MS) {
          lastPrune = now;
          void pruneReceivedTxns(db, now - REMEMBER_MS).catch((err: unknown) =>
            req.log.warn({ err }, 'cannot prune received federation transactions'),
          );
        }
        return response;
      });
    },
  );
}

/** Without an ingestion function every PDU is refused, by event id where it can be computed. */
async function refuseAll(deps: SendRoutesDeps, pdus: JsonObject[]): Promise<Record<string, PduResult>> {
  const out: Record<string, PduResult> = {};
  for (const pdu of pdus) {
    const id = await eventIdOf(deps, pdu);
    if (id) out[id] = { error: 'This server does not accept events over federation yet' };
  }
  return out;
}

async function eventIdOf(deps: SendRoutesDeps, pdu: JsonObject): Promise<string | undefined> {
  if (typeof pdu.event_id === 'string') return pdu.event_id;
  if (typeof pdu.room_id !== 'string') return undefined;
  const room = await deps.storage.db
    .selectFrom('rooms')
    .select('room_version')
    .where('room_id', '=', pdu.room_id)
    .executeTakeFirst();
  if (!room) return undefined;
  try {
    return computeEventId(pdu, getRoomVersion(room.room_version));
  } catch {
    return undefined;
  }
}
