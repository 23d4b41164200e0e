/** State of a room at a stream position or at an event, for sync. Damage degrades to partial state. */
import type { EventReader, LoadedEvent } from '../read/event-reader.js';
import type { Storage } from '../storage/db.js';
import { stateKey, type StateMapNids } from '../storage/state.js';
import { lastEventAtOrBefore } from './queries.js';

/** The state map after an event: the snapshot before it, plus the event itself when it is a state event. */
async function stateAfter(
  reader: EventReader,
  roomId: string,
  ev: { event_nid: number; state_snapshot_nid: number | null; type: string; state_key: string | null },
): Promise<StateMapNids> {
  const base =
    ev.state_snapshot_nid === null ? undefined : await reader.snapshot(ev.state_snapshot_nid, { roomId });
  const out = new Map(base ?? []);
  if (ev.state_key !== null) out.set(stateKey(ev.type, ev.state_key), ev.event_nid);
  return out;
}

/** The room's state after every event at or before `pos` (empty map when there is none). */
export async function stateAtPosition(
  storage: Storage,
  reader: EventReader,
  roomNid: number,
  roomId: string,
  pos: number,
): Promise<StateMapNids> {
  const last = await lastEventAtOrBefore(storage.db, roomNid, pos);
  if (!last) return new Map();
  return stateAfter(reader, roomId, last);
}

/** The state before an event (its snapshot), or an empty map if the snapshot is damaged (reported). */
export async function stateBefore(reader: EventReader, ev: LoadedEvent): Promise<StateMapNids> {
  if (ev.stateSnapshotNid === null) return new Map();
  return (
    (await reader.snapshot(ev.stateSnapshotNid, { roomId: ev.roomId, eventId: ev.eventId })) ?? new Map()
  );
}

/** The entries of `now` that differ from `before`. */
export function stateDelta(before: StateMapNids, now: StateMapNids): StateMapNids {
  const out: StateMapNids = new Map();
  for (const [k, nid] of now) if (before.get(k) !== nid) out.set(k, nid);
  return out;
}
