import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  authEventTypesFor,
  buildEvent,
  conflictedStateSubgraph,
  EventGraph,
  getRoomVersion,
  isPowerEvent,
  partitionStateSets,
  resolveState,
  roomIdFromCreateEventId,
  serverNameOf,
  stateMapKey,
  type JsonObject,
  type Pdu,
} from '../../src/rooms/index.js';
import { ALICE, BOB, CAROL, SEED } from './helpers.js';

interface Branch {
  state: Map<string, string>;
  last: string[];
  depth: number;
}

/** A room DAG with branches that can fork and be resolved. */
class Dag {
  readonly events = new Map<string, Pdu>();
  roomId = '';
  readonly get = (id: string): Pdu | undefined => this.events.get(id);

  constructor(readonly version: string) {}

  send(
    branch: Branch,
    t: { type: string; sender: string; state_key?: string; content: JsonObject },
    ts: number,
  ): string {
    const v = getRoomVersion(this.version);
    const isCreate = t.type === 'm.room.create';
    const auth = isCreate
      ? []
      : authEventTypesFor(t, v)
          .map(([type, sk]) => branch.state.get(stateMapKey(type, sk)))
          .filter((id): id is string => id !== undefined);
    if (isCreate && !v.roomIdFromCreateEvent) this.roomId = '!room:a.test';
    const content = isCreate && v.creatorInContent ? { creator: t.sender, ...t.content } : t.content;
    if (v.eventIdFormat === 'v1') {
      const eventId = `$${this.events.size + 1}:${serverNameOf(t.sender) ?? ''}`;
      const pdu: Pdu = {
        ...t,
        content,
        event_id: eventId,
        room_id: this.roomId,
        prev_events: branch.last,
        auth_events: auth,
        depth: branch.depth + 1,
        origin_server_ts: ts,
        hashes: { sha256: '' },
        signatures: {},
      };
      return this.record(branch, pdu, eventId);
    }
    const { pdu, eventId } = buildEvent(
      {
        ...t,
        content,
        ...(isCreate && v.roomIdFromCreateEvent ? {} : { room_id: this.roomId }),
        prev_events: branch.last,
        auth_events: auth,
        depth: branch.depth + 1,
        origin_server_ts: ts,
      },
      { roomVersion: v, serverName: serverNameOf(t.sender) ?? '', keyId: '1', seed: SEED },
    );
    if (isCreate && v.roomIdFromCreateEvent) this.roomId = roomIdFromCreateEventId(eventId);
    return this.record(branch, pdu, eventId);
  }

  private record(branch: Branch, pdu: Pdu, eventId: string): string {
    this.events.set(eventId, pdu);
    if (pdu.state_key !== undefined) branch.state.set(stateMapKey(pdu.type, pdu.state_key), eventId);
    branch.last = [eventId];
    branch.depth += 1;
    return eventId;
  }

  static fork(b: Branch): Branch {
    return { state: new Map(b.state), last: [...b.last], depth: b.depth };
  }

  /** create, alice join, power levels, public join rules, then bob and carol join. */
  static standard(version: string, users: JsonObject): { dag: Dag; base: Branch } {
    const dag = new Dag(version);
    const base: Branch = { state: new Map(), last: [], depth: 0 };
    dag.send(
      base,
      { type: 'm.room.create', state_key: '', sender: ALICE, content: { room_version: version } },
      1,
    );
    dag.send(
      base,
      { type: 'm.room.member', state_key: ALICE, sender: ALICE, content: { membership: 'join' } },
      2,
    );
    dag.send(base, { type: 'm.room.power_levels', state_key: '', sender: ALICE, content: { users } }, 3);
    dag.send(
      base,
      { type: 'm.room.join_rules', state_key: '', sender: ALICE, content: { join_rule: 'public' } },
      4,
    );
    dag.send(
      base,
      { type: 'm.room.member', state_key: BOB, sender: BOB, content: { membership: 'join' } },
      5,
    );
    dag.send(
      base,
      { type: 'm.room.member', state_key: CAROL, sender: CAROL, content: { membership: 'join' } },
      6,
    );
    return { dag, base };
  }
}

const topic = (sender: string, text: string) => ({
  type: 'm.room.topic',
  state_key: '',
  sender,
  content: { topic: text },
});

for (const version of ['10', '12']) {
  const users = version === '12' ? { [BOB]: 50 } : { [ALICE]: 100, [BOB]: 50 };

  describe(`state resolution (room version ${version})`, () => {
    it('returns the states unchanged when they agree', () => {
      const { dag, base } = Dag.standard(version, users);
      const resolved = resolveState(version, [base.state, new Map(base.state)], dag.get);
      assert.deepEqual(resolved, base.state);
    });

    it('a concurrent ban removes the banned user state changes', () => {
      const { dag, base } = Dag.standard(version, users);
      const a = Dag.fork(base);
      const b = Dag.fork(base);
      const ban = dag.send(
        a,
        { type: 'm.room.member', state_key: CAROL, sender: BOB, content: { membership: 'ban' } },
        10,
      );
      dag.send(
        b,
        {
          type: 'm.room.member',
          state_key: CAROL,
          sender: CAROL,
          content: { membership: 'join', displayname: 'C' },
        },
        11,
      );
      const t = dag.send(b, { type: 'm.room.message', sender: CAROL, content: {} }, 12);
      assert.ok(t);
      const resolved = resolveState(version, [a.state, b.state], dag.get);
      assert.equal(resolved.get(stateMapKey('m.room.member', CAROL)), ban);
    });

    it('a concurrent demotion invalidates the demoted user power events', () => {
      const { dag, base } = Dag.standard(version, users);
      const a = Dag.fork(base);
      const b = Dag.fork(base);
      const demoted = version === '12' ? { [BOB]: 0 } : { [ALICE]: 100, [BOB]: 0 };
      const pl = dag.send(
        a,
        { type: 'm.room.power_levels', state_key: '', sender: ALICE, content: { users: demoted } },
        20,
      );
      dag.send(
        b,
        { type: 'm.room.join_rules', state_key: '', sender: BOB, content: { join_rule: 'invite' } },
        10,
      );
      const resolved = resolveState(version, [a.state, b.state], dag.get);
      assert.equal(resolved.get(stateMapKey('m.room.power_levels', '')), pl);
      assert.equal(
        resolved.get(stateMapKey('m.room.join_rules', '')),
        base.state.get(stateMapKey('m.room.join_rules', '')),
      );
    });

    it('orders concurrent normal state by mainline, then timestamp', () => {
      for (const [tsAlice, tsBob, winner] of [
        [30, 40, 'bob'],
        [40, 30, 'alice'],
      ] as const) {
        const { dag, base } = Dag.standard(version, { ...users, [CAROL]: 50 });
        const a = Dag.fork(base);
        const b = Dag.fork(base);
        const ta = dag.send(a, topic(ALICE, 'from alice'), tsAlice);
        const tb = dag.send(b, topic(BOB, 'from bob'), tsBob);
        const resolved = resolveState(version, [a.state, b.state], dag.get);
        assert.equal(resolved.get(stateMapKey('m.room.topic', '')), winner === 'bob' ? tb : ta);
      }
    });

    it('an event based on a later power levels event in the mainline wins over an older one', () => {
      const { dag, base } = Dag.standard(version, users);
      const a = Dag.fork(base);
      // Branch a: a new power levels event, then a topic citing it (early timestamp).
      const newUsers = version === '12' ? { [BOB]: 50, [CAROL]: 50 } : { ...users, [CAROL]: 50 };
      dag.send(
        a,
        { type: 'm.room.power_levels', state_key: '', sender: ALICE, content: { users: newUsers } },
        10,
      );
      const b = Dag.fork(base);
      const late = dag.send(a, topic(CAROL, 'newer mainline'), 11);
      // Branch b: a topic citing the old power levels, with a later timestamp.
      dag.send(b, topic(BOB, 'older mainline'), 50);
      const resolved = resolveState(version, [a.state, b.state], dag.get);
      assert.equal(resolved.get(stateMapKey('m.room.topic', '')), late);
    });

    it('keeps unconflicted state even if it would not pass auth', () => {
      const { dag, base } = Dag.standard(version, users);
      const a = Dag.fork(base);
      const b = Dag.fork(base);
      dag.send(a, topic(ALICE, 'x'), 10);
      const key = stateMapKey('m.room.name', '');
      a.state.set(key, '$bogus');
      b.state.set(key, '$bogus');
      assert.equal(resolveState(version, [a.state, b.state], dag.get).get(key), '$bogus');
    });

    it('never admits rejected events', () => {
      const { dag, base } = Dag.standard(version, users);
      const a = Dag.fork(base);
      const b = Dag.fork(base);
      const ta = dag.send(a, topic(ALICE, 'a'), 10);
      const tb = dag.send(b, topic(BOB, 'b'), 20);
      const resolved = resolveState(version, [a.state, b.state], dag.get, { isRejected: (id) => id === tb });
      assert.equal(resolved.get(stateMapKey('m.room.topic', '')), ta);
    });
  });
}

describe('state resolution building blocks', () => {
  const ev = (auth: string[], extra: Partial<Pdu> = {}): Pdu => ({
    auth_events: auth,
    content: {},
    depth: 1,
    hashes: { sha256: '' },
    origin_server_ts: 0,
    prev_events: [],
    room_id: '!r',
    sender: ALICE,
    signatures: {},
    type: 'x',
    state_key: '',
    ...extra,
  });

  it('partitions state sets; a key missing from one set is conflicted', () => {
    const k1 = stateMapKey('a', '');
    const k2 = stateMapKey('b', '');
    const k3 = stateMapKey('c', '');
    const { unconflicted, conflicted } = partitionStateSets([
      new Map([
        [k1, '$1'],
        [k2, '$2'],
        [k3, '$3'],
      ]),
      new Map([
        [k1, '$1'],
        [k2, '$x'],
      ]),
    ]);
    assert.deepEqual([...unconflicted], [[k1, '$1']]);
    assert.deepEqual([...conflicted].sort(), ['$2', '$3', '$x']);
  });

  it('identifies power events', () => {
    assert.equal(isPowerEvent(ev([], { type: 'm.room.power_levels' })), true);
    assert.equal(isPowerEvent(ev([], { type: 'm.room.join_rules' })), true);
    assert.equal(
      isPowerEvent(ev([], { type: 'm.room.member', state_key: BOB, content: { membership: 'ban' } })),
      true,
    );
    assert.equal(
      isPowerEvent(ev([], { type: 'm.room.member', state_key: ALICE, content: { membership: 'leave' } })),
      false,
    );
    assert.equal(
      isPowerEvent(ev([], { type: 'm.room.member', state_key: BOB, content: { membership: 'invite' } })),
      false,
    );
    assert.equal(isPowerEvent(ev([], { type: 'm.room.topic' })), false);
  });

  it('computes the conflicted state subgraph (paths between conflicted events)', () => {
    // d -> c -> b -> a -> root, e -> a, f -> d (f is above the conflicted set)
    const events = new Map<string, Pdu>([
      ['$root', ev([])],
      ['$a', ev(['$root'])],
      ['$b', ev(['$a'])],
      ['$c', ev(['$b'])],
      ['$d', ev(['$c'])],
      ['$e', ev(['$a'])],
      ['$f', ev(['$d'])],
    ]);
    const graph = new EventGraph((id) => events.get(id));
    assert.deepEqual([...conflictedStateSubgraph(new Set(['$a', '$d', '$e']), graph)].sort(), [
      '$a',
      '$b',
      '$c',
      '$d',
      '$e',
    ]);
    assert.deepEqual([...conflictedStateSubgraph(new Set(['$b']), graph)], ['$b']);
    assert.deepEqual([...graph.authChain('$d')].sort(), ['$a', '$b', '$c', '$root']);
  });
});

describe('state resolution v1', () => {
  it('picks the deepest conflicting normal state event', () => {
    const { dag, base } = Dag.standard('1', { [ALICE]: 100, [BOB]: 50 });
    const a = Dag.fork(base);
    const b = Dag.fork(base);
    dag.send(a, topic(ALICE, 'a1'), 10);
    const deep = dag.send(a, topic(ALICE, 'a2'), 11);
    dag.send(b, topic(BOB, 'b1'), 50);
    const resolved = resolveState('1', [a.state, b.state], dag.get);
    assert.equal(resolved.get(stateMapKey('m.room.topic', '')), deep);
  });

  it('keys present in only one state are not conflicts', () => {
    const { dag, base } = Dag.standard('1', { [ALICE]: 100 });
    const a = Dag.fork(base);
    const t = dag.send(a, topic(ALICE, 'a'), 10);
    const resolved = resolveState('1', [a.state, base.state], dag.get);
    assert.equal(resolved.get(stateMapKey('m.room.topic', '')), t);
  });

  it('resolves conflicting membership through the auth rules: a ban sticks', () => {
    const { dag, base } = Dag.standard('1', { [ALICE]: 100, [BOB]: 50 });
    const a = Dag.fork(base);
    const b = Dag.fork(base);
    const ban = dag.send(
      a,
      { type: 'm.room.member', state_key: CAROL, sender: BOB, content: { membership: 'ban' } },
      10,
    );
    dag.send(
      b,
      { type: 'm.room.member', state_key: CAROL, sender: CAROL, content: { membership: 'join' } },
      10,
    );
    dag.send(
      b,
      { type: 'm.room.member', state_key: CAROL, sender: CAROL, content: { membership: 'join', x: 1 } },
      11,
    );
    const resolved = resolveState('1', [a.state, b.state], dag.get);
    assert.equal(resolved.get(stateMapKey('m.room.member', CAROL)), ban);
  });
});
