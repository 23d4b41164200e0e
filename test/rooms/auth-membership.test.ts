import { describe, it } from 'node:test';

import { checkEventAuth } from '../../src/rooms/index.js';
import { ALICE, assertAllowed, assertDenied, BOB, CAROL, DAVE, member, TestRoom } from './helpers.js';

describe('auth: joins', () => {
  for (const version of ['1', '3', '11', '12']) {
    it(`v${version}: the creator may join right after the create event`, () => {
      const room = new TestRoom(version);
      assertAllowed(room.check(member(ALICE, ALICE, 'join')));
    });
  }

  it('nobody else may join right after the create event (no join rules → invite only)', () => {
    const room = new TestRoom('11');
    assertDenied(room.check(member(BOB, BOB, 'join')), /need an invite/);
  });

  it("v12: an additional creator is not the create event's sender for the first join", () => {
    const room = new TestRoom('12', ALICE, { additional_creators: [BOB] });
    assertDenied(room.check(member(BOB, BOB, 'join')), /need an invite/);
  });

  it('a user cannot join on behalf of someone else', () => {
    const room = TestRoom.standard('10');
    assertDenied(room.check(member(ALICE, BOB, 'join')), /another user join/);
  });

  it('public rooms admit anyone who is not banned', () => {
    const room = TestRoom.standard('10');
    assertAllowed(room.check(member(BOB, BOB, 'join')));
    room.setMembership(BOB, 'ban', ALICE);
    assertDenied(room.check(member(BOB, BOB, 'join')), /^You are banned from this room$/);
  });

  it('invite-only rooms need an invite', () => {
    const room = TestRoom.standard('10', 'invite');
    assertDenied(room.check(member(BOB, BOB, 'join')), /need an invite/);
    room.must(member(ALICE, BOB, 'invite'));
    assertAllowed(room.check(member(BOB, BOB, 'join')));
  });

  it('knock join rule behaves as invite for joins from v7, and rejects before', () => {
    const room = TestRoom.standard('7', 'knock');
    room.must(member(ALICE, BOB, 'invite'));
    assertAllowed(room.check(member(BOB, BOB, 'join')));
    const v6 = TestRoom.standard('6', 'knock');
    v6.must(member(ALICE, BOB, 'invite'));
    assertDenied(v6.check(member(BOB, BOB, 'join')), /join rule "knock"/);
  });

  it('unknown join rules reject joins', () => {
    const room = TestRoom.standard('10', 'private');
    assertDenied(room.check(member(BOB, BOB, 'join')), /join rule "private"/);
  });
});

describe('auth: restricted joins', () => {
  function restrictedRoom(version: string, joinRule = 'restricted'): TestRoom {
    const room = TestRoom.standard(version, joinRule, { invite: 10 });
    room.setMembership(BOB, 'join');
    return room;
  }
  const via = (user: string, signer: string) => ({
    ...member(CAROL, CAROL, 'join', { join_authorised_via_users_server: user }),
    extraSigners: [signer],
  });

  it('v8+: a join authorised by a joined user with invite power, signed by their server, is allowed', () => {
    for (const v of ['8', '9', '10', '11', '12']) {
      assertAllowed(restrictedRoom(v).check(via(ALICE, 'a.test')), `v${v}`);
    }
  });

  it('rejects a join without join_authorised_via_users_server', () => {
    assertDenied(
      restrictedRoom('10').check(member(CAROL, CAROL, 'join')),
      /join_authorised_via_users_server/,
    );
  });

  it('rejects when the authorising server did not sign the join', () => {
    assertDenied(
      restrictedRoom('10').check(member(CAROL, CAROL, 'join', { join_authorised_via_users_server: ALICE })),
      /not signed by the server/,
    );
    // A custom signature check is honoured.
    const room = restrictedRoom('10');
    const made = room.make(via(ALICE, 'a.test'));
    assertDenied(checkEventAuth(made.pdu, room.lookup, '10', { isSignedBy: () => false }), /not signed/);
  });

  it('rejects when the authorising user lacks invite power or is not joined', () => {
    assertDenied(restrictedRoom('10').check(via(BOB, 'b.test')), /does not have permission to invite/);
    assertDenied(restrictedRoom('10').check(via(DAVE, 'a.test')), /not a member of the room/);
  });

  it('invited users join without authorisation', () => {
    const room = restrictedRoom('9');
    room.must(member(ALICE, CAROL, 'invite'));
    assertAllowed(room.check(member(CAROL, CAROL, 'join')));
  });

  it('restricted is unknown before v8, knock_restricted before v10', () => {
    assertDenied(restrictedRoom('7').check(via(ALICE, 'a.test')), /join rule "restricted"/);
    assertDenied(
      restrictedRoom('9', 'knock_restricted').check(via(ALICE, 'a.test')),
      /join rule "knock_restricted"/,
    );
    assertAllowed(restrictedRoom('10', 'knock_restricted').check(via(ALICE, 'a.test')));
  });
});

describe('auth: invites', () => {
  it('allows a joined member with the invite level', () => {
    const room = TestRoom.standard('10', 'invite');
    assertAllowed(room.check(member(ALICE, BOB, 'invite')));
  });

  it('rejects invites from non-members', () => {
    const room = TestRoom.standard('10', 'invite');
    assertDenied(room.check(member(CAROL, BOB, 'invite')), /must be in the room to invite/);
  });

  it('rejects inviting joined or banned users', () => {
    const room = TestRoom.standard('10');
    room.join(BOB);
    assertDenied(room.check(member(ALICE, BOB, 'invite')), /already in the room/);
    room.setMembership(CAROL, 'ban', ALICE);
    assertDenied(room.check(member(ALICE, CAROL, 'invite')), /banned/);
  });

  it('rejects invites below the invite level', () => {
    const room = TestRoom.standard('10', 'public', { invite: 50 });
    room.join(BOB);
    assertDenied(
      room.check(member(BOB, CAROL, 'invite')),
      /Only users with power level 50 or higher may invite \(yours is 0\)/,
    );
  });
});

describe('auth: leave, kick, ban', () => {
  it('users may leave when joined or invited, and not otherwise', () => {
    const room = TestRoom.standard('10', 'invite');
    room.must(member(ALICE, BOB, 'invite'));
    assertAllowed(room.check(member(BOB, BOB, 'leave')));
    assertDenied(room.check(member(CAROL, CAROL, 'leave')), /not in or invited/);
    room.setMembership(CAROL, 'ban', ALICE);
    assertDenied(room.check(member(CAROL, CAROL, 'leave')), /not in or invited/);
  });

  it('v7+: a knocking user may rescind the knock', () => {
    const room = TestRoom.standard('7', 'knock');
    room.must(member(BOB, BOB, 'knock'));
    assertAllowed(room.check(member(BOB, BOB, 'leave')));
  });

  it('kicking needs the kick level and a higher power level than the target', () => {
    const room = TestRoom.standard('10', 'public', { users: { [ALICE]: 100, [BOB]: 50, [CAROL]: 50 } });
    room.join(BOB);
    room.join(CAROL);
    room.join(DAVE);
    assertAllowed(room.check(member(BOB, DAVE, 'leave')));
    assertDenied(room.check(member(BOB, CAROL, 'leave')), /not lower than yours/);
    assertDenied(
      room.check(member(DAVE, CAROL, 'leave')),
      /^Only users with power level 50 or higher may kick \(yours is 0\)$/,
    );
    assertDenied(room.check(member(BOB, ALICE, 'leave')), /not lower than yours/);
  });

  it('kicking requires the kicker to be joined', () => {
    const room = TestRoom.standard('10');
    room.join(BOB);
    room.setMembership(ALICE, 'leave');
    assertDenied(room.check(member(ALICE, BOB, 'leave')), /must be in the room/);
  });

  it('unbanning needs the ban level as well as the kick level', () => {
    const room = TestRoom.standard('10', 'public', { ban: 75, users: { [ALICE]: 100, [BOB]: 60 } });
    room.join(BOB);
    room.setMembership(CAROL, 'ban', ALICE);
    assertDenied(room.check(member(BOB, CAROL, 'leave')), /power level 75 or higher may unban/);
    assertAllowed(room.check(member(ALICE, CAROL, 'leave')));
  });

  it('banning needs the ban level and a higher power level than the target', () => {
    const room = TestRoom.standard('10', 'public', { users: { [ALICE]: 100, [BOB]: 50 } });
    room.join(BOB);
    room.join(DAVE);
    assertAllowed(room.check(member(BOB, DAVE, 'ban')));
    // Banning users who never joined is allowed.
    assertAllowed(room.check(member(BOB, CAROL, 'ban')));
    assertDenied(room.check(member(DAVE, BOB, 'ban')), /power level 50 or higher may ban/);
    assertDenied(room.check(member(BOB, ALICE, 'ban')), /cannot ban/);
    assertDenied(room.check(member(CAROL, DAVE, 'ban')), /must be in the room to ban/);
  });
});

describe('auth: knocking', () => {
  it('v7+: knocking is allowed on knock rooms by users not banned, invited or joined', () => {
    const room = TestRoom.standard('7', 'knock');
    assertAllowed(room.check(member(BOB, BOB, 'knock')));
    assertDenied(room.check(member(ALICE, BOB, 'knock')), /on behalf of another/);
    room.must(member(ALICE, CAROL, 'invite'));
    assertDenied(room.check(member(CAROL, CAROL, 'knock')), /already invited/);
    assertDenied(room.check(member(ALICE, ALICE, 'knock')), /already in this room/);
    room.setMembership(DAVE, 'ban', ALICE);
    assertDenied(room.check(member(DAVE, DAVE, 'knock')), /banned/);
  });

  it('rejects knocks on rooms that do not allow them', () => {
    assertDenied(
      TestRoom.standard('7', 'public').check(member(BOB, BOB, 'knock')),
      /does not allow knocking/,
    );
    assertDenied(
      TestRoom.standard('9', 'knock_restricted').check(member(BOB, BOB, 'knock')),
      /does not allow knocking/,
    );
    assertAllowed(TestRoom.standard('10', 'knock_restricted').check(member(BOB, BOB, 'knock')));
  });

  it('knock is an unknown membership before v7', () => {
    assertDenied(
      TestRoom.standard('6', 'knock').check(member(BOB, BOB, 'knock')),
      /Unknown membership "knock"/,
    );
  });

  it('rejects member events without a membership', () => {
    const room = TestRoom.standard('10');
    assertDenied(
      room.check({ type: 'm.room.member', state_key: BOB, sender: BOB, content: {} }),
      /must have a membership/,
    );
    assertDenied(
      room.check({ type: 'm.room.member', sender: BOB, content: { membership: 'join' } }),
      /state_key/,
    );
  });
});
