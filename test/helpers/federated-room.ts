/**
 * Reading one room on several federating Hearths: waiting for a condition, a user's accumulated /sync view of a
 * room (timeline ids, ephemeral events), every event id /messages returns back to a marker, the sorted event ids of
 * the current state and the room's forward extremities.
 */
import assert from 'node:assert/strict';
import type { Client, Json } from './server.js';
import type { FederatedServer } from './federation.js';
import { until } from './until.js';
export { until };

export type FedUser = Client & { userId: string; deviceId: string };

/** Polls `check` every 100 ms until it returns a value; the error names `what` and the last value seen. */
export const enc = encodeURIComponent;

interface SyncRoom {
  timeline?: { events?: { event_id: string; type: string; state_key?: string; content: Json }[] };
  ephemeral?: { events?: { type: string; content: Json }[] };
}

const FILTER = enc(JSON.stringify({ room: { timeline: { limit: 200 } } }));

/** A user's incremental /sync, accumulated: the timeline event ids and the ephemeral events of each joined room. */
export class SyncView {
  #since: string | undefined;
  readonly timeline = new Map<string, Set<string>>();
  /** The latest ephemeral event of each type per room (typing and receipts replace earlier ones). */
  readonly ephemeral = new Map<string, Map<string, Json[]>>();
  readonly invites = new Set<string>();
  /** Rooms last seen in the `leave` section (removed again when seen joined). */
  readonly left = new Set<string>();

  constructor(readonly user: FedUser) {}

  async poll(): Promise<void> {
    const since = this.#since ? `&since=${enc(this.#since)}` : '';
    const res = await this.user.get(`/_matrix/client/v3/sync?timeout=0&filter=${FILTER}${since}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    this.#since = res.body.next_batch as string;
    const rooms = res.body.rooms as
      | { join?: Record<string, SyncRoom>; invite?: Record<string, unknown>; leave?: Record<string, unknown> }
      | undefined;
    for (const id of Object.keys(rooms?.invite ?? {})) this.invites.add(id);
    for (const id of Object.keys(rooms?.leave ?? {})) this.left.add(id);
    for (const [roomId, room] of Object.entries(rooms?.join ?? {})) {
      this.left.delete(roomId);
      let ids = this.timeline.get(roomId);
      if (!ids) this.timeline.set(roomId, (ids = new Set()));
      for (const e of room.timeline?.events ?? []) ids.add(e.event_id);
      let eph = this.ephemeral.get(roomId);
      if (!eph) this.ephemeral.set(roomId, (eph = new Map()));
      for (const e of room.ephemeral?.events ?? []) eph.set(e.type, [...(eph.get(e.type) ?? []), e.content]);
    }
  }

  /** Polls /sync until the room's timeline holds every id. */
  async sees(roomId: string, eventIds: readonly string[], what: string): Promise<void> {
    await until(`${this.user.userId} to see ${what} in /sync`, async () => {
      await this.poll();
      const ids = this.timeline.get(roomId);
      return eventIds.every((id) => ids?.has(id)) ? true : undefined;
    });
  }

  /** Polls /sync until an ephemeral event of `type` in the room satisfies `pred`. */
  async seesEphemeral(roomId: string, type: string, pred: (content: Json) => boolean): Promise<void> {
    await until(`${this.user.userId} to see ${type} in /sync`, async () => {
      await this.poll();
      return this.ephemeral.get(roomId)?.get(type)?.some(pred) ? true : undefined;
    });
  }
}

/** Every event id /messages returns, from the newest back to (and including) `marker`. */
export async function eventIdsSince(user: FedUser, roomId: string, marker: string): Promise<string[]> {
  const ids: string[] = [];
  let from = '';
  for (let page = 0; page < 20; page++) {
    const q = `dir=b&limit=100${from ? `&from=${enc(from)}` : ''}`;
    const res = await user.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?${q}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    for (const e of res.body.chunk as { event_id: string }[]) {
      ids.push(e.event_id);
      if (e.event_id === marker) return ids.sort();
    }
    if (typeof res.body.end !== 'string') break;
    from = res.body.end;
  }
  throw new Error(`${user.userId}: /messages never reached ${marker}`);
}

/** The sorted event ids of GET /rooms/{roomId}/state. */
export async function stateIds(user: FedUser, roomId: string): Promise<string[]> {
  const res = await user.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body as unknown as { event_id: string }[]).map((e) => e.event_id).sort();
}

/** The event ids of the room's forward extremities on a server. */
export async function forwardExtremities(server: FederatedServer, roomId: string): Promise<string[]> {
  const rows = await server.hs.storage.db
    .selectFrom('forward_extremities as f')
    .innerJoin('rooms as r', 'r.room_nid', 'f.room_nid')
    .innerJoin('events as e', 'e.event_nid', 'f.event_nid')
    .select('e.event_id')
    .where('r.room_id', '=', roomId)
    .execute();
  return rows.map((r) => r.event_id).sort();
}

/** The content of a state event as the user's server has it, or undefined (404 or not allowed). */
export async function stateContent(
  user: FedUser,
  roomId: string,
  type: string,
  stateKey = '',
): Promise<Json | undefined> {
  const res = await user.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state/${type}/${enc(stateKey)}`);
  return res.status === 200 ? res.body : undefined;
}

/** The joined members of the room as the user's server has them. */
export async function joinedMembers(user: FedUser, roomId: string): Promise<string[]> {
  const res = await user.get(`/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`);
  return res.status === 200 ? Object.keys(res.body.joined as object).sort() : [];
}
