/**
 * Bundled aggregations (client-server API "Aggregations of child events"): m.thread, m.replace and m.reference
 * summaries in unsigned.m.relations, added by every endpoint that serves events, /sync included.
 */
import type { LoadedEvent } from './event-reader.js';
import { formatEvents, visDeps, type ReadDeps, type Viewer } from './room-pagination.js';
import { childrenOf, nidsByPositions, threadSummaries } from './room-queries.js';
import { filterVisible } from './visibility.js';
import type { ClientEvent, JsonObject } from '../rooms/event.js';

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function relationOf(ev: LoadedEvent): JsonObject | undefined {
  const rel = ev.pdu.content['m.relates_to'];
  return isObject(rel) ? rel : undefined;
}

/** Validity of a replacement event (client-server API "Validity of replacement events"). */
function validEdit(edit: LoadedEvent, original: ClientEvent): boolean {
  if (edit.pdu.sender !== original.sender || edit.pdu.type !== original.type) return false;
  if (edit.pdu.state_key !== undefined || original.state_key !== undefined) return false;
  if (relationOf(edit)?.rel_type !== 'm.replace') return false;
  const origRel = original.content['m.relates_to'];
  if (isObject(origRel) && origRel.rel_type === 'm.replace') return false;
  return edit.pdu.type === 'm.room.encrypted' || isObject(edit.pdu.content['m.new_content']);
}

const newer = (a: LoadedEvent, b: LoadedEvent): boolean =>
  a.pdu.origin_server_ts !== b.pdu.origin_server_ts
    ? a.pdu.origin_server_ts > b.pdu.origin_server_ts
    : a.eventId > b.eventId;

/**
 * Adds `unsigned.m.relations` (m.thread, m.replace, m.reference) to each event that has children, in place,
 * and returns the events. Reusable by /sync: `events` are client-format events the viewer may see.
 */
export async function bundleAggregations(
  deps: ReadDeps,
  events: ClientEvent[],
  viewer: Viewer,
  depth = 0,
): Promise<ClientEvent[]> {
  const ids = events.map((e) => e.event_id);
  if (ids.length === 0) return events;
  const db = deps.storage.db;
  const [children, threads] = await Promise.all([
    childrenOf(db, ids, ['m.replace', 'm.reference']),
    threadSummaries(db, ids, viewer.userId),
  ]);
  if (children.length === 0 && threads.size === 0) return events;
  const latestNids = await nidsByPositions(
    db,
    [...threads.values()].map((t) => t.latestPos),
  );
  const loaded = await deps.reader.byNids([
    ...children.filter((c) => c.relType === 'm.replace').map((c) => c.nid),
    ...latestNids.values(),
  ]);
  const visible = new Set(
    (await filterVisible(visDeps(deps), viewer.userId, [...loaded.values()])).map((e) => e.nid),
  );
  const latestEvents: LoadedEvent[] = [];
  for (const nid of latestNids.values()) {
    const ev = loaded.get(nid);
    if (ev && visible.has(nid)) latestEvents.push(ev);
  }
  const formattedLatest = await formatEvents(deps, latestEvents, viewer);
  if (depth === 0) await bundleAggregations(deps, formattedLatest, viewer, depth + 1);
  const latestById = new Map(formattedLatest.map((e) => [e.event_id, e]));

  for (const ev of events) {
    const rel: JsonObject = {};
    const redacted = isObject(ev.unsigned) && ev.unsigned.redacted_because !== undefined;
    const thread = threads.get(ev.event_id);
    const latestNid = thread ? latestNids.get(thread.latestPos) : undefined;
    const latest = latestNid === undefined ? undefined : loaded.get(latestNid);
    const latestClient = latest ? latestById.get(latest.eventId) : undefined;
    if (thread && latestClient) {
      rel['m.thread'] = {
        latest_event: latestClient,
        count: thread.count,
        current_user_participated: thread.participated || ev.sender === viewer.userId,
      };
    }
    let edit: LoadedEvent | undefined;
    const refs: { event_id: string }[] = [];
    for (const c of children) {
      if (c.parentId !== ev.event_id) continue;
      if (c.relType === 'm.reference') refs.push({ event_id: c.eventId });
      const cand = c.relType === 'm.replace' ? loaded.get(c.nid) : undefined;
      if (cand && visible.has(cand.nid) && !redacted && validEdit(cand, ev) && (!edit || newer(cand, edit))) {
        edit = cand;
      }
    }
    if (edit) rel['m.replace'] = (await formatEvents(deps, [edit], viewer))[0];
    if (refs.length) rel['m.reference'] = { chunk: refs };
    if (Object.keys(rel).length) ev.unsigned = { ...ev.unsigned, 'm.relations': rel };
  }
  return events;
}
