/**
 * What a room's new events contribute to an incremental /sync, computed once per (room, since, to, filter) and
 * shared by every request woken for that position: timeline nids, loaded events, state delta and the formatted
 * client JSON (without the per-user `transaction_id`, summary and bundled aggregations, which each request adds to
 * its own copies). A small memo of in-flight and recent computations, keyed by position; entries age out as
 * positions advance. The shared computation runs on its own: a request that stops waiting for it (its client went
 * away, it is slow) holds no other.
 *
 * Shared only when the result cannot depend on the user: client format without `event_fields` or lazy-loaded
 * members, and every timeline event sent after the user's current join (visible under every history setting); any
 * other case returns undefined and the caller builds the section for the user alone.
 */
import type { JsonObject } from '../rooms/event.js';
import type { LoadedEvent } from '../read/event-reader.js';
import { txnIdsFor } from '../read/room-queries.js';
import type { SyncContext } from './context.js';
import { buildRoomSection, summary, type BuiltRoomSection, type RoomTimelineSection } from './joined-room.js';
import type { MembershipRow } from './queries.js';

/** Computations kept (in flight or done); the oldest go first. */
const MAX_ENTRIES = 256;

export class SharedRoomDeltas {
  #memo = new Map<string, Promise<BuiltRoomSection>>();
  /** Statistics for tests and benchmarks: sections computed and sections reused. */
  computed = 0;
  reused = 0;

  /** The section of room `m` for the user of `ctx` from `ctx.since` to `upTo`, or undefined when not shareable. */
  async section(ctx: SyncContext, m: MembershipRow, upTo: number): Promise<RoomTimelineSection | undefined> {
    const f = ctx.filter;
    if (ctx.since === null || ctx.fullState || m.stream_ordering > ctx.since) return undefined;
    if ((f.event_format ?? 'client') !== 'client' || f.event_fields !== undefined) return undefined;
    if (f.room?.state?.lazy_load_members === true) return undefined;
    const key = JSON.stringify([
      m.room_nid,
      ctx.since,
      upTo,
      ctx.useStateAfter,
      f.room?.timeline ?? null,
      f.room?.state ?? null,
    ]);
    let pending = this.#memo.get(key);
    if (pending) this.reused++;
    else {
      this.computed++;
      const shared: SyncContext = { ...ctx, userId: '', deviceId: '' };
      pending = buildRoomSection(shared, m, upTo, false, (events) => Promise.resolve(events), true);
      // A failure is not remembered: the next request computes again (and this one falls back to its own).
      pending.catch(() => this.#memo.delete(key));
      this.#memo.set(key, pending);
      while (this.#memo.size > MAX_ENTRIES) {
        const oldest = this.#memo.keys().next().value;
        if (oldest === undefined) break;
        this.#memo.delete(oldest);
      }
    }
    let built: BuiltRoomSection;
    try {
      built = await pending;
    } catch {
      return undefined;
    }
    // Events from before the user's join need the history visibility check of the user: not shareable.
    const sinceJoin = (e: LoadedEvent) =>
      e.stateSnapshotNid !== null && (e.streamOrdering ?? 0) > m.stream_ordering;
    if (!built.loaded.every(sinceJoin)) return undefined;
    return this.#forUser(ctx, m, built);
  }

  /** The user's copy: own timeline event objects (aggregations are added to them), txn ids, summary. */
  async #forUser(ctx: SyncContext, m: MembershipRow, built: BuiltRoomSection): Promise<RoomTimelineSection> {
    const { section, loaded } = built;
    const events = section.timeline.events.map((e) => ({
      ...e,
      unsigned: { ...(e.unsigned as JsonObject | undefined) },
    }));
    const own = loaded.filter((e) => e.pdu.sender === ctx.userId).map((e) => e.nid);
    if (own.length) {
      const txnIds = await txnIdsFor(ctx.storage.db, ctx.userId, ctx.deviceId, own);
      for (const [i, ev] of loaded.entries()) {
        const txn = txnIds.get(ev.nid);
        const out = events[i];
        if (txn !== undefined && out) out.unsigned.transaction_id = txn;
      }
    }
    const copy: RoomTimelineSection = { ...section, timeline: { ...section.timeline, events } };
    if (built.membershipChanged) copy.summary = await summary(ctx, m.room_nid);
    return copy;
  }
}
