/**
 * Which events, rooms and users an application service is interested in, as Synapse decides it
 * (`ApplicationService.is_interested_in_event`): the sender is in its users namespace, a member event's state key is
 * (an invite or a join of one of its users), or the room is interesting: its id is in the rooms namespace, one of its
 * aliases (local aliases and the canonical alias with its alt aliases) is in the aliases namespace, or one of its
 * joined members is in the users namespace. Room interest is judged on the room as it is now, like Synapse.
 */
import type { FanoutEvent } from '../storage/federation-queue.js';
import { roomInterestFacts, roomNidById, type RoomFacts } from '../storage/appservice.js';
import type { Executor } from '../storage/users.js';

/** The namespace tests of one application service (built from AS-1's registry). */
export interface InterestMatcher {
  user(userId: string): boolean;
  alias(alias: string): boolean;
  room(roomId: string): boolean;
}

export function roomIsInteresting(m: InterestMatcher, facts: RoomFacts): boolean {
  return m.room(facts.roomId) || facts.aliases.some((a) => m.alias(a)) || facts.joined.some((u) => m.user(u));
}

/** Room facts read once per room while one transaction is built (membership may change between transactions). */
export class RoomInterest {
  readonly #facts = new Map<number, RoomFacts | undefined>();
  readonly #byId = new Map<string, number>();

  constructor(private readonly db: Executor) {}

  async facts(roomNid: number): Promise<RoomFacts | undefined> {
    if (this.#facts.has(roomNid)) return this.#facts.get(roomNid);
    const f = await roomInterestFacts(this.db, roomNid);
    this.#facts.set(roomNid, f);
    if (f) this.#byId.set(f.roomId, roomNid);
    return f;
  }

  async interesting(m: InterestMatcher, roomNid: number): Promise<boolean> {
    const f = await this.facts(roomNid);
    return f !== undefined && roomIsInteresting(m, f);
  }

  async interestingById(m: InterestMatcher, roomId: string): Promise<boolean> {
    const nid = this.#byId.get(roomId) ?? (await roomNidById(this.db, roomId));
    return nid !== undefined && this.interesting(m, nid);
  }

  /** Whether the event concerns the service. */
  async event(m: InterestMatcher, ev: FanoutEvent): Promise<boolean> {
    if (m.user(ev.sender)) return true;
    if (ev.type === 'm.room.member' && ev.state_key !== null && m.user(ev.state_key)) return true;
    return this.interesting(m, ev.room_nid);
  }
}
