/** In-memory room builder for auth rule tests. */

import {
  authEventTypesFor,
  buildEvent,
  checkEventAuth,
  decodeBase64,
  getRoomVersion,
  roomIdFromCreateEventId,
  serverNameOf,
  signJson,
  type AuthOptions,
  type AuthResult,
  type JsonObject,
  type Pdu,
  type StateLookup,
} from '../../src/rooms/index.js';

export const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1') as Buffer;

export const ALICE = '@alice:a.test';
export const BOB = '@bob:b.test';
export const CAROL = '@carol:c.test';
export const DAVE = '@dave:a.test';

export interface Template {
  type: string;
  sender: string;
  state_key?: string;
  content: JsonObject;
  redacts?: string;
  /** Extra servers that sign the event (e.g. for join_authorised_via_users_server). */
  extraSigners?: string[];
}

export interface Made {
  pdu: Pdu;
  eventId: string;
}

const key = (type: string, stateKey: string): string => `${type}\u0000${stateKey}`;

export class TestRoom {
  readonly state = new Map<string, Made>();
  roomId = '';
  private last: string[] = [];
  private depth = 0;
  private ts = 1000;
  private counter = 0;

  readonly lookup: StateLookup = (type, stateKey) => this.state.get(key(type, stateKey))?.pdu;

  constructor(
    readonly version: string,
    readonly creator: string = ALICE,
    createContent: JsonObject = {},
  ) {
    const v = getRoomVersion(version);
    const content: JsonObject = { room_version: version, ...createContent };
    if (v.creatorInContent && !('creator' in createContent)) content['creator'] = creator;
    if (!v.roomIdFromCreateEvent) this.roomId = `!room:${serverNameOf(creator) ?? ''}`;
    const create = this.make({ type: 'm.room.create', state_key: '', sender: creator, content });
    if (v.roomIdFromCreateEvent) this.roomId = roomIdFromCreateEventId(create.eventId);
    this.apply(create);
  }

  /** A room with create, creator join, power levels (creator 100 unless v12) and join rules. */
  static standard(version: string, joinRule = 'public', powerLevels: JsonObject = {}): TestRoom {
    const room = new TestRoom(version);
    room.must({ type: 'm.room.member', state_key: ALICE, sender: ALICE, content: { membership: 'join' } });
    const users = getRoomVersion(version).privilegedCreators ? {} : { [ALICE]: 100 };
    room.must({
      type: 'm.room.power_levels',
      state_key: '',
      sender: ALICE,
      content: { users, ...powerLevels },
    });
    room.must({ type: 'm.room.join_rules', state_key: '', sender: ALICE, content: { join_rule: joinRule } });
    return room;
  }

  /** Build (but do not apply) an event on top of the current state. */
  make(t: Template, overrides: Partial<Pdu> = {}): Made {
    const v = getRoomVersion(this.version);
    const authEvents =
      t.type === 'm.room.create'
        ? []
        : authEventTypesFor(t, v)
            .map(([type, sk]) => this.state.get(key(type, sk))?.eventId)
            .filter((id): id is string => id !== undefined);
    const server = serverNameOf(t.sender) ?? 'unknown';
    const isV12Create = v.roomIdFromCreateEvent && t.type === 'm.room.create';
    this.depth += 1;
    this.ts += 1;
    let made: Made;
    if (v.eventIdFormat === 'v1') {
      const eventId = `$${++this.counter}:${server}`;
      const pdu: Pdu = {
        auth_events: authEvents,
        content: t.content,
        depth: this.depth,
        hashes: { sha256: 'unused' },
        origin_server_ts: this.ts,
        prev_events: t.type === 'm.room.create' ? [] : [...this.last],
        room_id: this.roomId,
        sender: t.sender,
        signatures: { [server]: { 'ed25519:1': 'unused' } },
        type: t.type,
        event_id: eventId,
      };
      if (t.state_key !== undefined) pdu.state_key = t.state_key;
      if (t.redacts !== undefined) pdu.redacts = t.redacts;
      made = { pdu, eventId };
    } else {
      made = buildEvent(
        {
          type: t.type,
          sender: t.sender,
          content: t.content,
          ...(t.state_key !== undefined ? { state_key: t.state_key } : {}),
          ...(isV12Create ? {} : { room_id: this.roomId }),
          ...(t.redacts !== undefined ? { redacts: t.redacts } : {}),
          prev_events: t.type === 'm.room.create' ? [] : [...this.last],
          auth_events: authEvents,
          depth: this.depth,
          origin_server_ts: this.ts,
        },
        { roomVersion: v, serverName: server, keyId: 'ed25519:1', seed: SEED },
      );
    }
    for (const signer of t.extraSigners ?? []) {
      made.pdu.signatures = signJson(made.pdu, signer, 'ed25519:1', SEED).signatures;
    }
    if (Object.keys(overrides).length > 0)
      made = { pdu: { ...made.pdu, ...overrides }, eventId: made.eventId };
    return made;
  }

  check(t: Template, opts: AuthOptions = {}, overrides: Partial<Pdu> = {}): AuthResult {
    const made = this.make(t, overrides);
    return checkEventAuth(made.pdu, this.lookup, this.version, opts);
  }

  apply(made: Made): void {
    if (made.pdu.state_key !== undefined) this.state.set(key(made.pdu.type, made.pdu.state_key), made);
    this.last = [made.eventId];
  }

  /** Build, check, and apply; throws if the auth rules reject the event. */
  must(t: Template, opts: AuthOptions = {}): Made {
    const made = this.make(t);
    const res = checkEventAuth(made.pdu, this.lookup, this.version, opts);
    if (!res.allowed) throw new Error(`setup event rejected: ${res.reason}`);
    this.apply(made);
    return made;
  }

  /** Put an event in the state without checking it (to set up awkward states). */
  force(t: Template): Made {
    const made = this.make(t);
    this.apply(made);
    return made;
  }

  join(user: string): Made {
    return this.must({
      type: 'm.room.member',
      state_key: user,
      sender: user,
      content: { membership: 'join' },
    });
  }

  setMembership(user: string, membership: string, sender = user): Made {
    return this.force({ type: 'm.room.member', state_key: user, sender, content: { membership } });
  }
}

export function member(sender: string, target: string, membership: string, extra: JsonObject = {}): Template {
  return { type: 'm.room.member', sender, state_key: target, content: { membership, ...extra } };
}

export function assertAllowed(res: AuthResult, message?: string): void {
  if (!res.allowed) throw new Error(`${message ?? 'expected allowed'}: ${res.reason}`);
}

export function assertDenied(res: AuthResult, pattern: RegExp, message?: string): void {
  if (res.allowed) throw new Error(`${message ?? 'expected denied'} (${pattern.source})`);
  if (!pattern.test(res.reason)) throw new Error(`reason "${res.reason}" does not match ${pattern}`);
}
