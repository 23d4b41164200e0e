import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';

import {
  buildEvent,
  checkContentHash,
  computeEventId,
  computeReferenceHash,
  decodeBase64,
  fromLegacyPdu,
  isValidEventId,
  isValidRoomId,
  publicKeyBase64FromSeed,
  redactsOf,
  roomIdFromCreateEvent,
  roomIdOf,
  toClientEvent,
  verifyEventSignature,
  type Pdu,
} from '../../src/rooms/index.js';

const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1') as Buffer;
const ctx = (roomVersion: string) => ({ roomVersion, serverName: 'domain', keyId: 'ed25519:1', seed: SEED });

describe('reference hash and event IDs', () => {
  const event = {
    auth_events: [],
    content: { body: 'hello' },
    depth: 1,
    hashes: { sha256: 'abc' },
    origin_server_ts: 5,
    prev_events: [],
    room_id: '!r:domain',
    sender: '@u:domain',
    signatures: { domain: { 'ed25519:1': 'sig' } },
    type: 'm.room.message',
    unsigned: { age: 1 },
  };

  it('hashes the canonical JSON of the redacted event without signatures and unsigned', () => {
    const expected = createHash('sha256')
      .update(
        '{"auth_events":[],"content":{},"depth":1,"hashes":{"sha256":"abc"},"origin_server_ts":5,' +
          '"prev_events":[],"room_id":"!r:domain","sender":"@u:domain","type":"m.room.message"}',
      )
      .digest();
    assert.deepEqual(computeReferenceHash(event, '4'), expected);
    assert.equal(computeEventId(event, '4'), `$${expected.toString('base64url')}`);
    assert.equal(computeEventId(event, '3'), `$${expected.toString('base64').replace(/=+$/, '')}`);
  });

  it('is unaffected by redactable content, signatures and unsigned, but by hashes', () => {
    const id = computeEventId(event, '10');
    assert.equal(
      computeEventId({ ...event, content: { body: 'other' }, unsigned: {}, signatures: {} }, '10'),
      id,
    );
    assert.notEqual(computeEventId({ ...event, hashes: { sha256: 'abd' } }, '10'), id);
    assert.equal(isValidEventId(id, 'v4'), true);
  });

  it('differs between v10 and v11 when the v11 redaction drops origin', () => {
    const withOrigin = { ...event, origin: 'domain' };
    assert.notEqual(computeEventId(withOrigin, '10'), computeEventId(withOrigin, '11'));
    assert.equal(computeEventId(event, '10'), computeEventId(event, '11'));
  });

  it('uses the event_id property in room versions 1 and 2', () => {
    assert.equal(computeEventId({ ...event, event_id: '$x:domain' }, '1'), '$x:domain');
    assert.throws(() => computeEventId(event, '2'), /must carry an event_id/);
  });
});

describe('buildEvent', () => {
  it('fills hashes and a verifiable signature and returns the event ID', () => {
    const { pdu, eventId } = buildEvent(
      {
        type: 'm.room.message',
        room_id: '!r:domain',
        sender: '@u:domain',
        content: { body: 'hi', msgtype: 'm.text' },
        prev_events: ['$p'],
        auth_events: ['$a'],
        depth: 7,
        origin_server_ts: 1234,
        unsigned: { transaction_id: 't1' },
      },
      ctx('10'),
    );
    assert.equal(checkContentHash(pdu), true);
    assert.equal(verifyEventSignature(pdu, '10', 'domain', 'ed25519:1', publicKeyBase64FromSeed(SEED)), true);
    assert.equal(eventId, computeEventId(pdu, '10'));
    assert.deepEqual(pdu.unsigned, { transaction_id: 't1' });
    assert.equal(pdu.depth, 7);
  });

  it('places redacts top-level before v11 and in content from v11', () => {
    const t = {
      type: 'm.room.redaction',
      room_id: '!r:domain',
      sender: '@u:domain',
      content: { reason: 'spam' },
      redacts: '$target',
      prev_events: [],
      auth_events: [],
      depth: 2,
      origin_server_ts: 1,
    };
    const old = buildEvent(t, ctx('10')).pdu;
    assert.equal(old.redacts, '$target');
    assert.equal(old.content['redacts'], undefined);
    assert.equal(redactsOf(old, '10'), '$target');
    const v11 = buildEvent(t, ctx('11')).pdu;
    assert.equal(v11.redacts, undefined);
    assert.equal(v11.content['redacts'], '$target');
    assert.equal(redactsOf(v11, '11'), '$target');
    assert.equal(redactsOf({ ...v11, redacts: '$forged' }, '11'), '$target');
  });

  it('refuses room versions 1/2 without an event_id and a room_id on a v12 create event', () => {
    const t = {
      type: 'm.room.create',
      state_key: '',
      sender: '@u:domain',
      content: {},
      prev_events: [],
      auth_events: [],
      depth: 1,
      origin_server_ts: 1,
    };
    assert.throws(() => buildEvent({ ...t, room_id: '!r:domain' }, ctx('1')), /need an event_id/);
    assert.throws(() => buildEvent({ ...t, room_id: '!r:domain' }, ctx('12')), /must not have a room_id/);
    assert.throws(() => buildEvent(t, ctx('11')), /room_id is required/);
  });
});

describe('buildEvent in room versions 1 and 2', () => {
  it('carries the given event_id and cites events as [id, { sha256 }] pairs, hashed and signed', () => {
    const { pdu, eventId } = buildEvent(
      {
        type: 'm.room.message',
        sender: '@u:domain',
        content: { body: 'hi' },
        room_id: '!r:domain',
        event_id: '$abc:domain',
        reference_hashes: new Map([['$prev:domain', 'cHJldg']]),
        prev_events: ['$prev:domain'],
        auth_events: ['$prev:domain', '$unknown:domain'],
        depth: 2,
        origin_server_ts: 1,
      },
      ctx('2'),
    );
    assert.equal(eventId, '$abc:domain');
    assert.equal(pdu.event_id, '$abc:domain');
    assert.deepEqual(pdu.prev_events, [['$prev:domain', { sha256: 'cHJldg' }]]);
    assert.deepEqual(pdu.auth_events, [
      ['$prev:domain', { sha256: 'cHJldg' }],
      ['$unknown:domain', {}],
    ]);
    assert.equal(checkContentHash(pdu), true);
    assert.equal(computeEventId(pdu, '2'), '$abc:domain');
    assert.equal(verifyEventSignature(pdu, '2', 'domain', 'ed25519:1', publicKeyBase64FromSeed(SEED)), true);
  });
});

describe('room version 12 room IDs', () => {
  const create = buildEvent(
    {
      type: 'm.room.create',
      state_key: '',
      sender: '@creator:domain',
      content: { room_version: '12', additional_creators: ['@other:domain'] },
      prev_events: [],
      auth_events: [],
      depth: 1,
      origin_server_ts: 1000,
    },
    ctx('12'),
  );

  it('derives the room ID from the create event hash', () => {
    const roomId = roomIdFromCreateEvent(create.pdu);
    assert.equal(roomId, `!${create.eventId.slice(1)}`);
    assert.equal(isValidRoomId(roomId, 'hash'), true);
    assert.equal(create.pdu.room_id, undefined);
    // Any change to the create event gives another room.
    assert.notEqual(roomIdFromCreateEvent({ ...create.pdu, origin_server_ts: 1001 }), roomId);
    assert.throws(() => roomIdFromCreateEvent(create.pdu, '11'), /not derived/);
  });

  it('gives the create event a room_id when serving it to clients', () => {
    const client = toClientEvent(create.pdu, create.eventId);
    assert.equal(client.room_id, roomIdFromCreateEvent(create.pdu));
    assert.equal(roomIdOf(create.pdu, create.eventId), client.room_id);
    assert.equal(client.event_id, create.eventId);
    assert.equal(client.state_key, '');
    assert.equal('hashes' in client, false);
    assert.equal('signatures' in client, false);
  });
});

describe('toClientEvent', () => {
  const pdu: Pdu = {
    auth_events: [],
    content: { reason: 'x' },
    depth: 3,
    hashes: { sha256: 'h' },
    origin_server_ts: 9,
    prev_events: [],
    room_id: '!r:d',
    sender: '@u:d',
    signatures: {},
    type: 'm.room.redaction',
    redacts: '$t',
    unsigned: { age: 5 },
  };

  it('serves redacts both top-level and in content', () => {
    const c = toClientEvent(pdu, '$e');
    assert.deepEqual(c, {
      content: { reason: 'x', redacts: '$t' },
      event_id: '$e',
      origin_server_ts: 9,
      room_id: '!r:d',
      sender: '@u:d',
      type: 'm.room.redaction',
      unsigned: { age: 5 },
      redacts: '$t',
    });
    assert.deepEqual(pdu.content, { reason: 'x' });
  });

  it('normalises legacy v1/v2 references', () => {
    const legacy = fromLegacyPdu({
      ...pdu,
      event_id: '$e:d',
      prev_events: [['$p:d', { sha256: 'x' }]],
      auth_events: [['$a:d', {}]],
    });
    assert.deepEqual(legacy.prev_events, ['$p:d']);
    assert.deepEqual(legacy.auth_events, ['$a:d']);
    assert.equal(legacy.event_id, '$e:d');
  });
});
