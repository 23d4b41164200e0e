/** What one /sync computation works with. */
import type { EventReader } from '../read/event-reader.js';
import type { Storage } from '../storage/db.js';
import type { TimelineRows } from '../storage/sliding-sync.js';
import type { Filter } from './filter.js';

/** Timeline rows of many rooms and the device's transaction ids among their events, each read in a few statements. */
export interface PrefetchedTimelines {
  /** By room nid, with the range they were read for. */
  rooms: ReadonlyMap<number, { after: number | null; upTo: number; rows: TimelineRows }>;
  /** Transaction ids of the syncing device's events among every prefetched timeline (event nid → txn id). */
  txnIds: ReadonlyMap<number, string>;
}

export interface SyncContext {
  storage: Storage;
  reader: EventReader;
  userId: string;
  deviceId: string;
  filter: Filter;
  /** Exclusive lower bound (the `since` position), or null for an initial sync. */
  since: number | null;
  /** Inclusive upper bound: every position up to it has committed. */
  to: number;
  fullState: boolean;
  useStateAfter: boolean;
  /** Timelines of the response's rooms read ahead in a few statements (joined-room.ts prefetchTimelines). */
  prefetched?: PrefetchedTimelines | undefined;
}

export const DEFAULT_TIMELINE_LIMIT = 10;
export const MAX_TIMELINE_LIMIT = 1000;

export function timelineLimit(filter: Filter): number {
  return Math.min(filter.room?.timeline?.limit ?? DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT);
}

/** Whether a room passes the filter's rooms / not_rooms. */
export function roomAllowed(filter: Filter, roomId: string): boolean {
  const f = filter.room;
  if (!f) return true;
  if (f.not_rooms?.includes(roomId)) return false;
  if (f.rooms && !f.rooms.includes(roomId)) return false;
  return true;
}

function typeMatches(pattern: string, type: string): boolean {
  if (!pattern.includes('*')) return pattern === type;
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(type);
}

/** An EventFilter / RoomEventFilter test on type and sender. */
export function eventAllowed(
  f:
    | {
        types?: string[] | undefined;
        not_types?: string[] | undefined;
        senders?: string[] | undefined;
        not_senders?: string[] | undefined;
      }
    | undefined,
  type: string,
  sender: string,
): boolean {
  if (!f) return true;
  if (f.not_types?.some((p) => typeMatches(p, type))) return false;
  if (f.types && !f.types.some((p) => typeMatches(p, type))) return false;
  if (f.not_senders?.includes(sender)) return false;
  if (f.senders && !f.senders.includes(sender)) return false;
  return true;
}
