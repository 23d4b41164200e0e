import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  authEventTypesFor,
  checkAuthEvents,
  encodeUnpaddedBase64,
  publicKeyFromSeed,
  redactionAllowed,
  selectAuthEventIds,
  signJson,
  stateMapKey,
  type Pdu,
} from '../../src/rooms/index.js';
import { ALICE, assertAllowed, assertDenied, BOB, CAROL, DAVE, member, SEED, TestRoom } from './helpers.js';

const ID_SEED = Buffer.alloc(32, 3);
const ID_PUBLIC = encodeUnpaddedBase64(publicKeyFromSeed(ID_SEED));

describe('auth: third-party invites', () => {
  function room(): TestRoom {
    const r = TestRoom.standard('10', 'invite');
    r.must({
      type: 'm.room.third_party_invite',
      state_key: 'tok',
      sender: ALICE,
      content: {
        display_name: 'c...@example.org',
        key_validity_url: 'https://id/x',
        public_keys: [{ public_key: ID_PUBLIC }],
      },
    });
    return r;
  }
  const signed = (mxid: string, token = 'tok', seed: Uint8Array = ID_SEED) =>
    signJson({ mxid, sender: ALICE, token }, 'id.example.org', 'ed25519:0', seed);
  const invite = (sender: string, s: object) =>
    member(sender, CAROL, 'invite', { third_party_invite: { display_name: 'c', signed: s } });

  it('allows an invite whose signed block verifies against the invite public key', () => {
    assertAllowed(room().check(invite(ALICE, signed(CAROL))));
  });

  it('rejects bad signatures, mismatched mxid, unknown tokens and other senders', () => {
    assertDenied(room().check(invite(ALICE, signed(CAROL, 'tok', SEED))), /signature does not match/);
    assertDenied(room().check(invite(ALICE, signed(BOB))), /different user/);
    assertDenied(room().check(invite(ALICE, signed(CAROL, 'other'))), /no matching third-party invite/);
    const r = room();
    r.setMembership(DAVE, 'join');
    assertDenied(r.check(invite(DAVE, signed(CAROL))), /Only the user who made the third-party invite/);
    assertDenied(room().check(invite(ALICE, { mxid: CAROL })), /mxid and token/);
    assertDenied(room().check(member(ALICE, CAROL, 'invite', { third_party_invite: {} })), /no signed block/);
  });

  it('rejects when the target is banned', () => {
    const r = room();
    r.setMembership(CAROL, 'ban', ALICE);
    assertDenied(r.check(invite(ALICE, signed(CAROL))), /banned/);
  });

  it('can be switched off', () => {
    assertDenied(
      room().check(invite(ALICE, signed(CAROL)), { allowThirdPartyInvites: false }),
      /^Third-party invites are not supported$/,
    );
  });
});

describe('auth: redactions', () => {
  it('v1/v2: redacting needs the redact level unless the event ID domains match', () => {
    const r = TestRoom.standard('1');
    r.join(BOB);
    r.join(DAVE);
    const target = r.must({ type: 'm.room.message', sender: DAVE, content: {} });
    assert.match(target.eventId, /:a\.test$/);
    const redaction = (sender: string) => ({
      type: 'm.room.redaction',
      sender,
      content: {},
      redacts: target.eventId,
    });
    assertDenied(r.check(redaction(BOB)), /power level 50 or higher may redact/);
    assertAllowed(r.check(redaction(ALICE)));
    // Same server as the redacted event's ID (DAVE is on a.test like ALICE).
    assertAllowed(r.check(redaction(DAVE)));
  });

  it('v3+: redactions pass the auth rules like other events; applying them is separate', () => {
    const r = TestRoom.standard('10');
    r.join(BOB);
    const target = r.must({ type: 'm.room.message', sender: ALICE, content: {} });
    assertAllowed(r.check({ type: 'm.room.redaction', sender: BOB, content: {}, redacts: target.eventId }));
    assert.equal(redactionAllowed({ sender: BOB }, target.pdu, r.lookup, '10'), false);
    assert.equal(redactionAllowed({ sender: ALICE }, { sender: BOB }, r.lookup, '10'), true);
    assert.equal(redactionAllowed({ sender: DAVE }, { sender: ALICE }, r.lookup, '10'), true);
    const strict = TestRoom.standard('10', 'public', { events: { 'm.room.redaction': 50 } });
    strict.join(BOB);
    assertDenied(
      strict.check({ type: 'm.room.redaction', sender: BOB, content: { redacts: '$x' } }),
      /m\.room\.redaction/,
    );
  });
});

describe('auth events selection', () => {
  it('selects create, power levels and sender member; v12 omits create', () => {
    const msg = { type: 'm.room.message', sender: ALICE, content: {} };
    assert.deepEqual(authEventTypesFor(msg, '11'), [
      ['m.room.create', ''],
      ['m.room.power_levels', ''],
      ['m.room.member', ALICE],
    ]);
    assert.deepEqual(authEventTypesFor(msg, '12'), [
      ['m.room.power_levels', ''],
      ['m.room.member', ALICE],
    ]);
    assert.deepEqual(
      authEventTypesFor({ type: 'm.room.create', state_key: '', sender: ALICE, content: {} }, '11'),
      [],
    );
  });

  it('adds target member, join rules, third-party invite and authorising user for member events', () => {
    const join = member(CAROL, CAROL, 'join', { join_authorised_via_users_server: ALICE });
    assert.deepEqual(authEventTypesFor(join, '9'), [
      ['m.room.create', ''],
      ['m.room.power_levels', ''],
      ['m.room.member', CAROL],
      ['m.room.join_rules', ''],
      ['m.room.member', ALICE],
    ]);
    assert.equal(authEventTypesFor(join, '7').length, 4);
    const tpi = member(ALICE, CAROL, 'invite', { third_party_invite: { signed: { token: 'tok' } } });
    assert.deepEqual(authEventTypesFor(tpi, '12').slice(2), [
      ['m.room.member', CAROL],
      ['m.room.join_rules', ''],
      ['m.room.third_party_invite', 'tok'],
    ]);
    const leave = member(ALICE, BOB, 'leave');
    assert.deepEqual(authEventTypesFor(leave, '12').slice(2), [['m.room.member', BOB]]);
  });

  it('checkAuthEvents accepts the selected events and rejects bad lists', () => {
    const r = TestRoom.standard('10');
    const made = r.make({ type: 'm.room.message', sender: ALICE, content: {} });
    const get = (t: string, k: string): Pdu => {
      const e = r.lookup(t, k);
      assert.ok(e);
      return e;
    };
    const create = get('m.room.create', '');
    const pls = get('m.room.power_levels', '');
    const alice = get('m.room.member', ALICE);
    assertAllowed(checkAuthEvents(made.pdu, [create, pls, alice], '10'));
    assertDenied(checkAuthEvents(made.pdu, [create, pls, pls], '10'), /Duplicate/);
    assertDenied(checkAuthEvents(made.pdu, [pls, alice], '10'), /m\.room\.create/);
    assertDenied(checkAuthEvents(made.pdu, [create, get('m.room.join_rules', '')], '10'), /not needed/);
    assertDenied(
      checkAuthEvents(made.pdu, [create, { ...pls, room_id: '!other:a.test' }], '10'),
      /another room/,
    );
  });

  it('v12: the create event must not be an auth event', () => {
    const r = TestRoom.standard('12');
    const made = r.make({ type: 'm.room.message', sender: ALICE, content: {} });
    const create = r.lookup('m.room.create', '');
    const pls = r.lookup('m.room.power_levels', '');
    assert.ok(create && pls);
    assert.equal(made.pdu.auth_events.length, 2);
    assertAllowed(checkAuthEvents(made.pdu, [pls], '12'));
    assertDenied(checkAuthEvents(made.pdu, [create, pls], '12'), /not needed/);
  });
});

describe('selectAuthEventIds', () => {
  it('maps the selected keys to event IDs from a state map, skipping absent ones', () => {
    const state = new Map([
      [stateMapKey('m.room.create', ''), '$create'],
      [stateMapKey('m.room.power_levels', ''), '$pl'],
      [stateMapKey('m.room.member', ALICE), '$alice'],
      [stateMapKey('m.room.join_rules', ''), '$jr'],
    ]);
    const join = member(BOB, BOB, 'join');
    assert.deepEqual(selectAuthEventIds(join, state, '10'), ['$create', '$pl', '$jr']);
    assert.deepEqual(selectAuthEventIds(join, state, '12'), ['$pl', '$jr']);
  });
});
