/**
 * The server-side room list of sliding sync: the user's rooms sorted by bump stamp (as Synapse) or, for the v4 API,
 * by latest activity of any kind (the proposal: "not ordered by bump_stamp"), newest first; each list's
 * filters applied, its ranges cut out. Filter facts (DMs, encryption, room types, spaces, tags) are read in bulk,
 * once per computation and only for the filters a request uses.
 */
import type { EventReader } from '../../read/event-reader.js';
import type { Storage } from '../../storage/db.js';
import {
  currentStateOfType,
  globalAccountData,
  roomAccountDataOfType,
  type UserRoomRow,
} from '../../storage/sliding-sync.js';
import type { SyncExclusions } from '../../storage/sync-exclusions.js';
import type { ListConfig, ListFilters } from './request.js';

export interface ListedRoom extends UserRoomRow {
  bumpStamp: number;
  /** What the list is sorted by (newest first): the bump stamp, or (v4) the latest activity of any kind. */
  sortKey: number;
}

/**
 * The rooms that may appear in lists: joined, invited, knocked, kicked or banned (by someone else), and rooms the
 * user left themselves only when this connection already has them. Forgotten rooms never.
 */
export function listableRooms(
  rows: readonly UserRoomRow[],
  userId: string,
  sentBefore: (roomId: string) => boolean,
  byLastActivity = false,
): ListedRoom[] {
  const out: ListedRoom[] = [];
  for (const r of rows) {
    if (r.forgotten) continue;
    if (r.membership === 'leave' || r.membership === 'ban') {
      const selfLeave = r.membershipSender === userId || r.membershipSender === null;
      if (selfLeave && !sentBefore(r.roomId)) continue;
    } else if (r.membership !== 'join' && r.membership !== 'invite' && r.membership !== 'knock') continue;
    const joined = r.membership === 'join';
    const bumpStamp = joined ? (r.bump ?? r.membershipStream) : r.membershipStream;
    const sortKey = byLastActivity && joined ? (r.last ?? r.membershipStream) : bumpStamp;
    // Spelled out rather than spread: this runs for every room of the user.
    out.push({
      roomNid: r.roomNid,
      roomId: r.roomId,
      membership: r.membership,
      eventNid: r.eventNid,
      membershipStream: r.membershipStream,
      membershipSender: r.membershipSender,
      forgotten: r.forgotten,
      bump: r.bump,
      last: r.last,
      bumpStamp,
      sortKey,
    });
  }
  return out.sort((a, b) => b.sortKey - a.sortKey || b.roomNid - a.roomNid);
}

/**
 * `rows` without the invites the user is not served (as /sync v2, see src/sync/ignored.ts): those sent by a user in
 * their `m.ignored_user_list`, and every invite while they block invites. The same array when nothing is dropped.
 */
export function withoutExcludedInvites(rows: UserRoomRow[], x: SyncExclusions): UserRoomRow[] {
  if (x.ignored.size === 0 && !x.blocksInvites) return rows;
  return rows.filter(
    (r) =>
      r.membership !== 'invite' ||
      (!x.blocksInvites && (r.membershipSender === null || !x.ignored.has(r.membershipSender))),
  );
}

/** Facts read once per computation, each only when first needed. */
export class FilterFacts {
  #dm: Promise<Set<string>> | undefined;
  #encrypted: Promise<Set<number>> | undefined;
  #types: Promise<Map<number, string | null>> | undefined;
  #tags: Promise<Map<string, Set<string>>> | undefined;
  #spaces = new Map<string, Promise<Set<string>>>();

  constructor(
    private readonly storage: Storage,
    private readonly reader: EventReader,
    private readonly userId: string,
    private readonly rooms: readonly ListedRoom[],
  ) {}

  /** Room ids named in the user's m.direct account data. */
  dmRooms(): Promise<Set<string>> {
    this.#dm ??= (async () => {
      const raw = await globalAccountData(this.storage.db, this.userId, 'm.direct');
      const out = new Set<string>();
      try {
        const content: unknown = raw === undefined ? {} : JSON.parse(raw);
        if (typeof content === 'object' && content !== null)
          for (const ids of Object.values(content))
            if (Array.isArray(ids)) for (const id of ids) if (typeof id === 'string') out.add(id);
      } catch {
        // Unreadable m.direct: no DMs.
      }
      return out;
    })();
    return this.#dm;
  }

  #nids(): number[] {
    return this.rooms.map((r) => r.roomNid);
  }

  encrypted(): Promise<Set<number>> {
    this.#encrypted ??= currentStateOfType(this.storage.db, this.#nids(), 'm.room.encryption').then(
      (m) => new Set(m.keys()),
    );
    return this.#encrypted;
  }

  /** The `type` of each room's create event (null: none). */
  roomTypes(): Promise<Map<number, string | null>> {
    this.#types ??= (async () => {
      const creates = await currentStateOfType(this.storage.db, this.#nids(), 'm.room.create');
      const byRoom = new Map<number, number>();
      for (const [room, keys] of creates) {
        const nid = keys.get('');
        if (nid !== undefined) byRoom.set(room, nid);
      }
      const events = await this.reader.byNids([...byRoom.values()]);
      const out = new Map<number, string | null>();
      for (const [room, nid] of byRoom) {
        const t = events.get(nid)?.pdu.content.type;
        out.set(room, typeof t === 'string' ? t : null);
      }
      return out;
    })();
    return this.#types;
  }

  /** room_id → tag names (m.tag room account data). */
  tags(): Promise<Map<string, Set<string>>> {
    this.#tags ??= roomAccountDataOfType(this.storage.db, this.userId, 'm.tag').then((m) => {
      const out = new Map<string, Set<string>>();
      for (const [roomId, raw] of m) {
        try {
          const tags = (JSON.parse(raw) as { tags?: unknown }).tags;
          if (typeof tags === 'object' && tags !== null) out.set(roomId, new Set(Object.keys(tags)));
        } catch {
          // Unreadable tags: the room has none.
        }
      }
      return out;
    });
    return this.#tags;
  }

  /** Children (m.space.child with a `via`) of the given spaces the user is joined to. */
  spaceChildren(spaces: readonly string[]): Promise<Set<string>> {
    const key = [...spaces].sort().join('\n');
    let p = this.#spaces.get(key);
    if (!p) {
      p = (async () => {
        const joined = this.rooms.filter((r) => r.membership === 'join' && spaces.includes(r.roomId));
        const children = await currentStateOfType(
          this.storage.db,
          joined.map((r) => r.roomNid),
          'm.space.child',
        );
        const nids = [...children.values()].flatMap((m) => [...m.values()]);
        const events = await this.reader.byNids(nids);
        const out = new Set<string>();
        for (const ev of events.values()) {
          const via = ev.pdu.content.via;
          if (Array.isArray(via) && via.length > 0 && ev.pdu.state_key) out.add(ev.pdu.state_key);
        }
        return out;
      })();
      this.#spaces.set(key, p);
    }
    return p;
  }
}

/** The rooms of `rooms` (sorted) that pass the filters, in order. */
export async function applyFilters(
  rooms: readonly ListedRoom[],
  f: ListFilters,
  facts: FilterFacts,
): Promise<ListedRoom[]> {
  let out = [...rooms];
  if (f.isInvite !== undefined) out = out.filter((r) => (r.membership === 'invite') === f.isInvite);
  if (f.isDm !== undefined) {
    const dm = await facts.dmRooms();
    out = out.filter((r) => dm.has(r.roomId) === f.isDm);
  }
  if (f.isEncrypted !== undefined) {
    const enc = await facts.encrypted();
    out = out.filter((r) => enc.has(r.roomNid) === f.isEncrypted);
  }
  if (f.roomTypes !== undefined || f.notRoomTypes !== undefined) {
    const types = await facts.roomTypes();
    const typeOf = (r: ListedRoom) => types.get(r.roomNid) ?? null;
    if (f.roomTypes) {
      const allowed = f.roomTypes;
      out = out.filter((r) => allowed.includes(typeOf(r)));
    }
    if (f.notRoomTypes) {
      const denied = f.notRoomTypes;
      out = out.filter((r) => !denied.includes(typeOf(r)));
    }
  }
  if (f.spaces !== undefined) {
    const children = await facts.spaceChildren(f.spaces);
    out = out.filter((r) => children.has(r.roomId));
  }
  if (f.tags !== undefined || f.notTags !== undefined) {
    const tags = await facts.tags();
    const tagsOf = (r: ListedRoom) => tags.get(r.roomId) ?? new Set<string>();
    if (f.notTags?.length) {
      const denied = f.notTags;
      out = out.filter((r) => !denied.some((t) => tagsOf(r).has(t)));
    }
    if (f.tags?.length) {
      const wanted = f.tags;
      out = out.filter((r) => wanted.some((t) => tagsOf(r).has(t)));
    }
  }
  return out;
}

/** The rooms a list's ranges select from its filtered rooms (in list order, each once). */
export function inRanges(filtered: readonly ListedRoom[], list: ListConfig): ListedRoom[] {
  if (list.ranges === null) return [...filtered];
  const seen = new Set<number>();
  const out: ListedRoom[] = [];
  for (const [start, end] of list.ranges) {
    for (let i = start; i <= end && i < filtered.length; i++) {
      const r = filtered[i];
      if (r && !seen.has(i)) {
        seen.add(i);
        out.push(r);
      }
    }
  }
  return out;
}
