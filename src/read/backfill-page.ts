/**
 * Backwards pagination that continues into history this server does not have yet: when a page of /messages runs
 * out of stored events (the range below `from` is exhausted), older events are backfilled from the servers in the
 * room (federation/backfill.ts) and the page is read again in the same request, with history visibility applied as
 * usual. A few rounds at most per request; when no server answers, the page is what is stored.
 */
import { lowestPosition } from '../storage/backfill.js';
import {
  paginateRoom,
  type Page,
  type PageRequest,
  type ReadDeps,
  type RoomAccess,
} from './room-pagination.js';

/** Fetches older events of a room; says how many were placed in the timeline and which outliers were promoted. */
export type BackfillFn = (roomId: string, limit: number) => Promise<{ placed: number; promoted: string[] }>;

const MAX_ROUNDS = 3;
const MIN_BATCH = 20;
const MAX_BATCH = 100;

export async function paginateBackfilling(
  deps: ReadDeps,
  access: RoomAccess,
  req: PageRequest,
  backfill: BackfillFn | undefined,
): Promise<Page> {
  let page = await paginateRoom(deps, access, req);
  if (!backfill || req.dir !== 'b' || req.to !== undefined || page.next !== undefined) return page;
  const roomId = access.room.roomId;
  const batch = Math.min(Math.max(req.limit, MIN_BATCH), MAX_BATCH);
  let placed = 0;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const got = await backfill(roomId, batch);
    for (const id of got.promoted) deps.reader.invalidateById(id);
    placed = got.placed;
    if (placed === 0) break;
    page = await paginateRoom(deps, access, req);
    if (page.next !== undefined) return page;
  }
  // The last round placed events none of which could fill the page (not visible, filtered out): older history may
  // remain on other servers, so the client gets a token to go on from below what is stored.
  if (placed > 0) {
    const lowest = await lowestPosition(deps.storage.db, access.room.roomNid);
    if (lowest !== undefined) return { ...page, next: Math.min(lowest - 1, req.from) };
  }
  return page;
}
