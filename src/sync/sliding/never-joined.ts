/**
 * A room the user left or was removed from without ever having joined it (a rejected or revoked invite, a
 * rescinded or refused knock): only their own membership event is theirs to see, never the room's state.
 */
import type { JsonObject } from '../../rooms/event.js';
import { formatStreamToken } from '../../read/tokens.js';
import { joinPositions } from '../../read/visibility.js';
import { formatEvents } from '../format.js';
import type { BuildContext, RoomInput, RoomOutcome } from './room-result.js';

/** Whether the user ever joined the room (one query, for rooms inside the window only). */
export async function everJoined(ctx: BuildContext, roomId: string): Promise<boolean> {
  const { storage, reader } = ctx.deps;
  const joins = await joinPositions({ db: storage.db, reader }, ctx.userId, [roomId]);
  return (joins.get(roomId)?.length ?? 0) > 0;
}

/**
 * The user's own leave as the room's whole timeline, sent once per membership; a ban of a user who never joined
 * is not sent at all (the proposal keeps such rooms out of lists).
 */
export async function neverJoinedRoom(
  ctx: BuildContext,
  input: RoomInput,
  common: JsonObject,
): Promise<RoomOutcome | undefined> {
  const { room, prev } = input;
  if (room.membership === 'ban') return undefined;
  if (prev && prev.membership === room.membership && prev.sentTo >= room.membershipStream) return undefined;
  const { storage, reader } = ctx.deps;
  const own = await reader.listByNids([room.eventNid]);
  const timeline = await formatEvents({ storage, reader }, own, { format: 'client', omitRoomId: true });
  const body: JsonObject = {
    ...common,
    timeline,
    required_state: [],
    limited: false,
    prev_batch: formatStreamToken(room.membershipStream - 1),
    num_live: ctx.since !== null && room.membershipStream > ctx.since ? timeline.length : 0,
  };
  if (ctx.flavour === 'v4') body.stripped_state = [];
  return {
    body,
    sent: {
      roomId: room.roomId,
      membership: room.membership,
      sentTo: ctx.to,
      timelineLimit: input.config.timelineLimit,
      requiredState: '[]',
      lazyMembers: '[]',
    },
    timeline,
    // Bundled aggregations are always looked up for it (null).
    timelineFrom: null,
  };
}
