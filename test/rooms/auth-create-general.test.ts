import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { checkEventAuth, ROOM_VERSIONS, type Pdu } from '../../src/rooms/index.js';
import { ALICE, assertAllowed, assertDenied, BOB, DAVE, TestRoom } from './helpers.js';

const ALL = [...ROOM_VERSIONS.keys()];

function createOf(room: TestRoom): Pdu {
  const c = room.lookup('m.room.create', '');
  assert.ok(c);
  return c;
}

describe('auth: m.room.create', () => {
  for (const version of ALL) {
    it(`v${version}: a well-formed create event is allowed`, () => {
      const room = new TestRoom(version);
      assertAllowed(checkEventAuth(createOf(room), () => undefined, version));
    });
  }

  it('rejects a create event with prev_events', () => {
    const room = new TestRoom('11');
    const pdu = { ...createOf(room), prev_events: ['$x'] };
    assertDenied(
      checkEventAuth(pdu, () => undefined, '11'),
      /prev_events/,
    );
  });

  it('v1-v11: rejects a room ID on another server than the sender', () => {
    const room = new TestRoom('11');
    const pdu = { ...createOf(room), room_id: '!room:b.test' };
    assertDenied(
      checkEventAuth(pdu, () => undefined, '11'),
      /server/,
    );
  });

  it('rejects an unknown content.room_version', () => {
    const room = new TestRoom('10', ALICE, { room_version: '99' });
    assertDenied(
      checkEventAuth(createOf(room), () => undefined, '10'),
      /Unsupported room version "99"/,
    );
  });

  it('v1-v10 require content.creator; v11 does not', () => {
    const r10 = new TestRoom('10');
    const pdu10 = { ...createOf(r10), content: { room_version: '10' } };
    assertDenied(
      checkEventAuth(pdu10, () => undefined, '10'),
      /content\.creator/,
    );
    const r11 = new TestRoom('11');
    assert.equal(createOf(r11).content['creator'], undefined);
    assertAllowed(checkEventAuth(createOf(r11), () => undefined, '11'));
  });

  it('v12: rejects a create event with a room_id', () => {
    const room = new TestRoom('12');
    const pdu = { ...createOf(room), room_id: room.roomId };
    assertDenied(
      checkEventAuth(pdu, () => undefined, '12'),
      /must not have a room_id/,
    );
  });

  it('v12: validates additional_creators', () => {
    const bad = new TestRoom('12', ALICE, { additional_creators: ['@bob:b.test', 'not-a-user'] });
    assertDenied(
      checkEventAuth(createOf(bad), () => undefined, '12'),
      /additional_creators/,
    );
    const notArray = new TestRoom('12', ALICE, { additional_creators: '@bob:b.test' });
    assertDenied(
      checkEventAuth(createOf(notArray), () => undefined, '12'),
      /additional_creators/,
    );
    const ok = new TestRoom('12', ALICE, { additional_creators: [BOB] });
    assertAllowed(checkEventAuth(createOf(ok), () => undefined, '12'));
    // v11 does not validate the field.
    const v11 = new TestRoom('11', ALICE, { additional_creators: 'whatever' });
    assertAllowed(checkEventAuth(createOf(v11), () => undefined, '11'));
  });
});

describe('auth: general rules', () => {
  it('rejects events when the state has no create event', () => {
    const room = TestRoom.standard('11');
    const made = room.make({ type: 'm.room.message', sender: ALICE, content: {} });
    assertDenied(
      checkEventAuth(made.pdu, () => undefined, '11'),
      /no m\.room\.create/,
    );
  });

  it("v12: rejects events whose room_id is not the create event's", () => {
    const room = TestRoom.standard('12');
    assertDenied(
      room.check({ type: 'm.room.message', sender: ALICE, content: {} }, {}, { room_id: '!other' }),
      /room ID does not match/,
    );
    assertAllowed(room.check({ type: 'm.room.message', sender: ALICE, content: {} }));
  });

  it('m.federate=false rejects senders from other servers', () => {
    const room = new TestRoom('10', ALICE, { 'm.federate': false });
    room.join(ALICE);
    room.must({ type: 'm.room.join_rules', state_key: '', sender: ALICE, content: { join_rule: 'public' } });
    assertDenied(
      room.check({ type: 'm.room.member', state_key: BOB, sender: BOB, content: { membership: 'join' } }),
      /other servers/,
    );
    assertAllowed(
      room.check({ type: 'm.room.member', state_key: DAVE, sender: DAVE, content: { membership: 'join' } }),
    );
  });

  for (const version of ['1', '6', '10', '12']) {
    it(`v${version}: non-members cannot send events`, () => {
      const room = TestRoom.standard(version);
      assertDenied(room.check({ type: 'm.room.message', sender: BOB, content: {} }), /not a member/);
      room.join(BOB);
      assertAllowed(room.check({ type: 'm.room.message', sender: BOB, content: {} }));
    });
  }

  it('enforces the required power level of the event type', () => {
    const room = TestRoom.standard('10', 'public', { events_default: 10, events: { 'm.room.name': 0 } });
    room.join(BOB);
    assertDenied(
      room.check({ type: 'm.room.message', sender: BOB, content: {} }),
      /Only users with power level 10 or higher may send m\.room\.message events \(yours is 0\)/,
    );
    // state_default defaults to 50, but m.room.name is lowered to 0.
    assertDenied(
      room.check({ type: 'm.room.topic', state_key: '', sender: BOB, content: {} }),
      /power level 50/,
    );
    assertAllowed(room.check({ type: 'm.room.name', state_key: '', sender: BOB, content: { name: 'x' } }));
    assertAllowed(room.check({ type: 'm.room.message', sender: ALICE, content: {} }));
  });

  it('reserves state keys starting with @ for that user', () => {
    const room = TestRoom.standard('10', 'public', { state_default: 0 });
    room.join(BOB);
    assertDenied(room.check({ type: 'x.custom', state_key: ALICE, sender: BOB, content: {} }), /reserved/);
    assertAllowed(room.check({ type: 'x.custom', state_key: BOB, sender: BOB, content: {} }));
  });

  it('m.room.third_party_invite needs the invite level', () => {
    const room = TestRoom.standard('10', 'public', { invite: 50 });
    room.join(BOB);
    const t = { type: 'm.room.third_party_invite', state_key: 'tok', sender: BOB, content: {} };
    assertDenied(room.check(t), /power level 50 or higher may send third-party invites/);
    assertAllowed(room.check({ ...t, sender: ALICE }));
  });

  it('v1-v5: m.room.aliases only needs the state key to be the sender server', () => {
    const room = TestRoom.standard('5');
    // Bob is not even a member.
    assertAllowed(room.check({ type: 'm.room.aliases', state_key: 'b.test', sender: BOB, content: {} }));
    assertDenied(
      room.check({ type: 'm.room.aliases', state_key: 'a.test', sender: BOB, content: {} }),
      /server name/,
    );
    const v6 = TestRoom.standard('6');
    assertDenied(
      v6.check({ type: 'm.room.aliases', state_key: 'b.test', sender: BOB, content: {} }),
      /not a member/,
    );
  });
});
