import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  banLevel,
  inviteLevel,
  kickLevel,
  notificationLevel,
  parsePowerLevel,
  redactLevel,
  requiredPowerLevel,
  userPowerLevel,
  type JsonObject,
} from '../../src/rooms/index.js';
import { ALICE, assertAllowed, assertDenied, BOB, CAROL, member, TestRoom } from './helpers.js';

function pl(sender: string, content: JsonObject) {
  return { type: 'm.room.power_levels', state_key: '', sender, content };
}

describe('power level lookups', () => {
  it('uses the spec defaults without a power levels event (creator 100 before v12)', () => {
    const room = new TestRoom('11');
    room.join(ALICE);
    assert.equal(userPowerLevel(ALICE, room.lookup, '11'), 100);
    assert.equal(userPowerLevel(BOB, room.lookup, '11'), 0);
    assert.equal(requiredPowerLevel('m.room.name', true, room.lookup), 50);
    assert.equal(requiredPowerLevel('m.room.message', false, room.lookup), 0);
    assert.deepEqual(
      [inviteLevel(room.lookup), kickLevel(room.lookup), banLevel(room.lookup), redactLevel(room.lookup)],
      [0, 50, 50, 50],
    );
    assert.equal(notificationLevel('room', room.lookup), 50);
  });

  it('v1-v10 take the creator from content.creator', () => {
    const room = new TestRoom('10', ALICE, { creator: BOB });
    assert.equal(userPowerLevel(BOB, room.lookup, '10'), 100);
    assert.equal(userPowerLevel(ALICE, room.lookup, '10'), 0);
  });

  it('reads users, users_default, events and the named levels', () => {
    const room = TestRoom.standard('10', 'public', {
      users_default: 5,
      events: { 'm.room.name': 20 },
      state_default: 40,
      events_default: 3,
      invite: 7,
      kick: 8,
      ban: 9,
      redact: 11,
      notifications: { room: 12 },
    });
    assert.equal(userPowerLevel(ALICE, room.lookup, '10'), 100);
    assert.equal(userPowerLevel(BOB, room.lookup, '10'), 5);
    assert.equal(requiredPowerLevel('m.room.name', true, room.lookup), 20);
    assert.equal(requiredPowerLevel('m.room.topic', true, room.lookup), 40);
    assert.equal(requiredPowerLevel('m.room.message', false, room.lookup), 3);
    assert.deepEqual(
      [inviteLevel(room.lookup), kickLevel(room.lookup), banLevel(room.lookup), redactLevel(room.lookup)],
      [7, 8, 9, 11],
    );
    assert.equal(notificationLevel('room', room.lookup), 12);
  });

  it('parses legacy string and float values', () => {
    assert.equal(parsePowerLevel(' +050 '), 50);
    assert.equal(parsePowerLevel('-10'), -10);
    assert.equal(parsePowerLevel(51146.98), 51146);
    assert.equal(parsePowerLevel('5.5'), undefined);
    assert.equal(parsePowerLevel(Infinity), undefined);
    assert.equal(parsePowerLevel(null), undefined);
  });
});

describe('auth: m.room.power_levels', () => {
  function room(version = '10'): TestRoom {
    const r = TestRoom.standard(version, 'public', { users: { [ALICE]: 100, [BOB]: 50, [CAROL]: 50 } });
    r.join(BOB);
    r.join(CAROL);
    return r;
  }
  const base = { users: { [ALICE]: 100, [BOB]: 50, [CAROL]: 50 } };

  it('the first power levels event is allowed whatever it says', () => {
    const r = new TestRoom('10');
    r.join(ALICE);
    assertAllowed(r.check(pl(ALICE, { users: { [ALICE]: 100, [BOB]: 1000 }, ban: 9000 })));
  });

  it('v10+: rejects non-integer levels; v1-v9 accept integer strings', () => {
    assertDenied(room('10').check(pl(ALICE, { ...base, ban: '50' })), /"ban" must be an integer/);
    assertDenied(
      room('10').check(pl(ALICE, { ...base, events: { x: 1.5 } })),
      /events "x" must be an integer/,
    );
    assertDenied(
      room('10').check(pl(ALICE, { ...base, notifications: 5 })),
      /"notifications" must be an object/,
    );
    assertDenied(
      room('10').check(pl(ALICE, { users: { ...base.users, [BOB]: '50' } })),
      /Power level of @bob:b.test must be an integer/,
    );
    assertAllowed(room('9').check(pl(ALICE, { users: { ...base.users, [BOB]: '50' }, ban: '50' })));
    assertDenied(
      room('9').check(pl(ALICE, { users: { ...base.users, [BOB]: 'fifty' } })),
      /must be an integer/,
    );
  });

  it('rejects users keys that are not user IDs', () => {
    assertDenied(
      room().check(pl(ALICE, { users: { ...base.users, 'not-a-user': 10 } })),
      /not a valid user ID/,
    );
    assertDenied(room().check(pl(ALICE, { users: [] })), /"users" must be an object/);
  });

  it('cannot change a level to or from above your own', () => {
    assertDenied(room().check(pl(BOB, { ...base, ban: 60 })), /"ban" to or from 60/);
    const high = TestRoom.standard('10', 'public', { ...base, kick: 80 });
    high.join(BOB);
    assertDenied(high.check(pl(BOB, { ...base, kick: 10 })), /"kick" to or from 80/);
    assertAllowed(room().check(pl(BOB, { ...base, ban: 40 })));
  });

  it('cannot add, change or remove events entries above your own level', () => {
    assertDenied(room().check(pl(BOB, { ...base, events: { 'm.room.name': 51 } })), /events "m.room.name"/);
    const r = TestRoom.standard('10', 'public', { ...base, events: { 'm.room.tombstone': 100 } });
    r.join(BOB);
    assertDenied(r.check(pl(BOB, { ...base })), /events "m.room.tombstone" to or from 100/);
    assertAllowed(r.check(pl(BOB, { ...base, events: { 'm.room.tombstone': 100, 'm.room.name': 50 } })));
  });

  it('v6+ also checks notifications; v5 does not', () => {
    assertDenied(room('6').check(pl(BOB, { ...base, notifications: { room: 75 } })), /notifications "room"/);
    assertAllowed(room('5').check(pl(BOB, { ...base, notifications: { room: 75 } })));
  });

  it('cannot change users at or above your own level, except yourself', () => {
    assertDenied(
      room().check(pl(BOB, { users: { ...base.users, [CAROL]: 10 } })),
      /power level of @carol:c.test/,
    );
    assertDenied(
      room().check(pl(BOB, { users: { ...base.users, [ALICE]: 0 } })),
      /power level of @alice:a.test/,
    );
    assertAllowed(room().check(pl(BOB, { users: { ...base.users, [BOB]: 10 } })));
  });

  it('cannot give anyone more than your own level', () => {
    assertDenied(
      room().check(pl(BOB, { users: { ...base.users, '@new:x.test': 51 } })),
      /give @new:x.test power level 51/,
    );
    assertAllowed(room().check(pl(BOB, { users: { ...base.users, '@new:x.test': 50 } })));
    assertDenied(room().check(pl(BOB, { users: { ...base.users, [BOB]: 60 } })), /above yours/);
  });

  it('needs the state power level to send power levels at all', () => {
    const r = room();
    r.join('@dave:a.test');
    assertDenied(r.check(pl('@dave:a.test', base)), /m\.room\.power_levels events/);
  });
});

describe('v12 room creators', () => {
  it('creators and additional creators have infinite power', () => {
    const r = new TestRoom('12', ALICE, { additional_creators: [BOB] });
    r.join(ALICE);
    r.must(pl(ALICE, { users: { [CAROL]: 100 } }));
    assert.equal(userPowerLevel(ALICE, r.lookup, '12'), Infinity);
    assert.equal(userPowerLevel(BOB, r.lookup, '12'), Infinity);
    assert.equal(userPowerLevel(CAROL, r.lookup, '12'), 100);
    assert.equal(userPowerLevel('@x:y.test', r.lookup, '12'), 0);
    // The same content in v11 gives no special power to additional_creators.
    const v11 = new TestRoom('11', ALICE, { additional_creators: [BOB] });
    assert.equal(userPowerLevel(BOB, v11.lookup, '11'), 0);
    assert.equal(userPowerLevel(ALICE, v11.lookup, '11'), 100);
  });

  it('creators cannot be listed in power levels users', () => {
    const r = new TestRoom('12', ALICE, { additional_creators: [BOB] });
    r.join(ALICE);
    assertDenied(r.check(pl(ALICE, { users: { [ALICE]: 100 } })), /creator @alice:a.test cannot be given/);
    assertDenied(r.check(pl(ALICE, { users: { [BOB]: 100 } })), /creator @bob:b.test/);
    // v11: listing the creator is normal.
    const v11 = new TestRoom('11');
    v11.join(ALICE);
    assertAllowed(v11.check(pl(ALICE, { users: { [ALICE]: 100 } })));
  });

  it('an additional creator can kick and demote a user with power level 100', () => {
    const r = new TestRoom('12', ALICE, { additional_creators: [BOB] });
    r.join(ALICE);
    r.must({ type: 'm.room.join_rules', state_key: '', sender: ALICE, content: { join_rule: 'public' } });
    r.must(pl(ALICE, { users: { [CAROL]: 100 } }));
    r.join(BOB);
    r.join(CAROL);
    assertAllowed(r.check(pl(BOB, { users: { [CAROL]: 0 }, ban: 1000 })));
    assertAllowed(r.check(member(BOB, CAROL, 'leave')));
    // Nobody can kick a creator, not even with power level 100.
    assertDenied(r.check(member(CAROL, BOB, 'leave')), /not lower than yours/);
    assertDenied(r.check(member(CAROL, ALICE, 'ban')), /cannot ban/);
  });
});
