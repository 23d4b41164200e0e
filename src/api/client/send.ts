/** Sending events: messages, state and redactions (client-server API "Sending events to a room"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { scopedTxnId } from '../../util/txn.js';
import { canonicalJson } from '../../rooms/canonical-json.js';
import { checkContent, checkEventType, checkStateKey, MAX_PDU_BYTES } from '../../roomsvc/content.js';
import { requester, type Requester } from '../auth.js';
import { massagedTs } from '../appservice-auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody } from '../validate.js';

type SendParams = { Params: { roomId: string; eventType: string; txnId: string } };
type StateParams = { Params: { roomId: string; eventType: string; stateKey?: string } };
type RedactParams = { Params: { roomId: string; eventId: string; txnId: string } };

const RedactBody = z.looseObject({ reason: z.string().optional() });

function checkSize(content: unknown): void {
  // The PDU envelope adds well under 2 KB to the content.
  if (Buffer.byteLength(canonicalJson(content)) > MAX_PDU_BYTES - 2048) {
    throw new MatrixError('M_TOO_LARGE', 'Event too large (the limit is 65536 bytes)');
  }
}

/**
 * An m.room.redaction sent with /send (v1.18, MSC4169) names its target in `content.redacts` in every room version:
 * it is taken out of the content and handed to the writer as the event's target, which puts it where the room
 * version wants it (the content from version 11, the top level before, as the spec asks) and checks it as it checks
 * PUT /redact's.
 */
function redactionParts(type: string, content: Record<string, unknown>) {
  if (type !== 'm.room.redaction') return { content };
  const { redacts, ...rest } = content;
  if (typeof redacts !== 'string' || redacts === '') {
    throw new MatrixError(
      'M_BAD_JSON',
      'An m.room.redaction needs the event id it redacts in content.redacts',
    );
  }
  return { content: rest, redacts };
}

export function sendRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { writer, auth, config, rateLimiter } = deps;
  const guard = { preHandler: auth.requireUser };
  const limit = (r: Requester): void => {
    if (!r.isAdmin && !r.exemptFromRateLimits)
      rateLimiter.check(`message:${r.userId}`, config.rate_limiting.message);
  };

  /** PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId} */
  app.put<SendParams>('/_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId', guard, async (req) => {
    const r = requester(req);
    const { roomId, eventType, txnId } = req.params;
    checkEventType(eventType);
    const content = checkContent(req.body ?? {});
    checkSize(content);
    limit(r);
    const res = await writer.send(
      roomId,
      {
        type: eventType,
        sender: r.userId,
        originServerTs: massagedTs(req),
        ...redactionParts(eventType, content),
      },
      { userId: r.userId, deviceId: r.deviceId, txnId: scopedTxnId(`send/${roomId}/${eventType}`, txnId) },
    );
    return { event_id: res.eventId };
  });

  /** PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} */
  const putState = async (req: {
    params: StateParams['Params'];
    body: unknown;
    query?: unknown;
    requester: Requester | null;
  }) => {
    const r = req.requester as Requester;
    const { roomId, eventType } = req.params;
    const stateKey = req.params.stateKey ?? '';
    checkEventType(eventType);
    checkStateKey(stateKey);
    const content = checkContent(req.body ?? {});
    checkSize(content);
    limit(r);
    const res = await writer.send(roomId, {
      type: eventType,
      state_key: stateKey,
      sender: r.userId,
      content,
      originServerTs: massagedTs(req),
    });
    return { event_id: res.eventId };
  };
  app.put<StateParams>('/_matrix/client/v3/rooms/:roomId/state/:eventType/:stateKey', guard, putState);
  app.put<StateParams>('/_matrix/client/v3/rooms/:roomId/state/:eventType', guard, putState);

  /** PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId} */
  app.put<RedactParams>('/_matrix/client/v3/rooms/:roomId/redact/:eventId/:txnId', guard, async (req) => {
    const r = requester(req);
    const { roomId, eventId, txnId } = req.params;
    const body = parseBody(RedactBody, req.body);
    // The writer refuses a target in another room, and other users' events without the redact level.
    limit(r);
    const content = body.reason !== undefined ? { reason: body.reason } : {};
    const res = await writer.send(
      roomId,
      { type: 'm.room.redaction', sender: r.userId, content, redacts: eventId },
      { userId: r.userId, deviceId: r.deviceId, txnId: scopedTxnId(`redact/${roomId}/${eventId}`, txnId) },
    );
    return { event_id: res.eventId };
  });
}
