/**
 * User directory search (POST /user_directory/search) with Synapse's default visibility (search_all_users off):
 * the searcher sees users who share a room with them and users joined to public rooms (join rule `public` or
 * world-readable history), plus themselves. Deactivated users are never listed. Every word of the search term
 * must be a prefix of a word of the user id or display name (case-insensitive), as Synapse's full-text search.
 */
import type { Storage } from '../storage/db.js';

export const MAX_LIMIT = 50;

export interface DirectoryUser {
  user_id: string;
  display_name?: string;
  avatar_url?: string;
}

interface Candidate {
  userId: string;
  displayname: string | null;
  avatarUrl: string | null;
  shared: boolean;
}

/** Lower-cased words (letters and digits) of a string. */
export function words(s: string): string[] {
  return s
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0);
}

function matches(c: Candidate, terms: readonly string[]): boolean {
  const own = [...words(c.userId), ...words(c.displayname ?? '')];
  return terms.every((t) => own.some((w) => w.startsWith(t)));
}

/** Synapse's ranking factors: sharing a room (x4), having a display name and an avatar (x1.2 each). */
function score(c: Candidate): number {
  return (c.shared ? 4 : 1) * (c.displayname ? 1.2 : 1) * (c.avatarUrl ? 1.2 : 1);
}

/** Rooms whose current join rule is `public` or whose history is world-readable. */
async function publicRoomNids(storage: Storage): Promise<number[]> {
  const rows = await storage.db
    .selectFrom('current_state as c')
    .innerJoin('events as e', 'e.event_nid', 'c.event_nid')
    .select(['c.room_nid', 'c.type', 'e.json'])
    .where('c.state_key', '=', '')
    .where('c.type', 'in', ['m.room.join_rules', 'm.room.history_visibility'])
    .execute();
  const out = new Set<number>();
  for (const r of rows) {
    let content: Record<string, unknown> | undefined;
    try {
      content = (JSON.parse(r.json) as { content?: Record<string, unknown> }).content;
    } catch {
      continue;
    }
    if (r.type === 'm.room.join_rules' && content?.join_rule === 'public') out.add(Number(r.room_nid));
    if (r.type === 'm.room.history_visibility' && content?.history_visibility === 'world_readable') {
      out.add(Number(r.room_nid));
    }
  }
  return [...out];
}

export async function searchUserDirectory(
  storage: Storage,
  searcher: string,
  searchTerm: string,
  limit: number,
): Promise<{ results: DirectoryUser[]; limited: boolean }> {
  const terms = words(searchTerm);
  if (terms.length === 0) return { results: [], limited: false };
  const db = storage.db;
  const mine = await db
    .selectFrom('room_members')
    .select('room_nid')
    .where('user_id', '=', searcher)
    .where('membership', '=', 'join')
    .execute();
  const mineNids = new Set(mine.map((r) => Number(r.room_nid)));
  const visibleNids = [...new Set([...mineNids, ...(await publicRoomNids(storage))])];
  const candidates = new Map<string, Candidate>();
  for (let i = 0; i < visibleNids.length; i += 500) {
    const rows = await db
      .selectFrom('room_members as m')
      .innerJoin('users as u', 'u.user_id', 'm.user_id')
      .select(['u.user_id', 'u.displayname', 'u.avatar_url', 'm.room_nid'])
      .where('m.membership', '=', 'join')
      .where('u.deactivated', '=', 0)
      .where('m.room_nid', 'in', visibleNids.slice(i, i + 500))
      .execute();
    for (const r of rows) {
      const shared = mineNids.has(Number(r.room_nid));
      const seen = candidates.get(r.user_id);
      if (seen) seen.shared ||= shared;
      else
        candidates.set(r.user_id, {
          userId: r.user_id,
          displayname: r.displayname,
          avatarUrl: r.avatar_url,
          shared,
        });
    }
  }
  if (!candidates.has(searcher)) {
    const me = await db
      .selectFrom('users')
      .select(['user_id', 'displayname', 'avatar_url', 'deactivated'])
      .where('user_id', '=', searcher)
      .executeTakeFirst();
    if (me && !me.deactivated) {
      candidates.set(searcher, {
        userId: searcher,
        displayname: me.displayname,
        avatarUrl: me.avatar_url,
        shared: true,
      });
    }
  }
  const found = [...candidates.values()].filter((c) => matches(c, terms));
  found.sort(
    (a, b) =>
      score(b) - score(a) ||
      (a.displayname ?? a.userId).localeCompare(b.displayname ?? b.userId) ||
      (a.userId < b.userId ? -1 : 1),
  );
  const n = Math.max(0, Math.min(limit, MAX_LIMIT));
  const results = found.slice(0, n).map((c) => {
    const u: DirectoryUser = { user_id: c.userId };
    if (c.displayname !== null) u.display_name = c.displayname;
    if (c.avatarUrl !== null) u.avatar_url = c.avatarUrl;
    return u;
  });
  return { results, limited: found.length > n };
}
