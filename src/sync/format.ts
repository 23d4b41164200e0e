/** Turning loaded events into what a sync or pagination response carries (client or federation format). */
import type { JsonObject } from '../rooms/event.js';
import { clientEvent, type LoadedEvent } from '../read/event-reader.js';
import { loadRedactions, type ReadDeps } from '../read/room-pagination.js';

export interface FormatOptions {
  format: 'client' | 'federation';
  eventFields?: string[] | undefined;
  txnIds?: ReadonlyMap<number, string>;
  /** Strip room_id (sync timelines and state omit it). */
  omitRoomId?: boolean;
}

/** Keeps only the dotted `fields` (with `\.` escaping a literal dot), as the filter's event_fields asks. */
export function pickFields(event: JsonObject, fields: string[]): JsonObject {
  const out: JsonObject = {};
  for (const field of fields) {
    const path = field.split(/(?<!\\)\./).map((p) => p.replace(/\\\./g, '.'));
    let src: unknown = event;
    for (const p of path) src = typeof src === 'object' && src !== null ? (src as JsonObject)[p] : undefined;
    if (src === undefined) continue;
    let dst = out;
    for (const [i, p] of path.entries()) {
      if (i === path.length - 1) dst[p] = src;
      else {
        if (typeof dst[p] !== 'object' || dst[p] === null) dst[p] = {};
        dst = dst[p] as JsonObject;
      }
    }
  }
  return out;
}

/** Formats events in order, loading the redaction events that redacted any of them. */
export async function formatEvents(
  deps: ReadDeps,
  events: LoadedEvent[],
  opts: FormatOptions,
): Promise<JsonObject[]> {
  const redactions = await loadRedactions(deps, events);
  const now = Date.now();
  return events.map((ev) => {
    let out: JsonObject;
    if (opts.format === 'federation') {
      out = { ...ev.pdu, event_id: ev.eventId } as JsonObject;
    } else {
      out = clientEvent(ev, {
        now,
        redactions,
        ...(opts.txnIds ? { txnIds: opts.txnIds } : {}),
      }) as unknown as JsonObject;
      if (opts.omitRoomId) delete out.room_id;
    }
    return opts.eventFields ? pickFields(out, opts.eventFields) : out;
  });
}

/** Stripped state (invite_state / knock_state): type, state_key, content and sender only. */
export function strippedState(ev: LoadedEvent): JsonObject {
  return {
    type: ev.pdu.type,
    state_key: ev.pdu.state_key ?? '',
    content: ev.pdu.content,
    sender: ev.pdu.sender,
  };
}
