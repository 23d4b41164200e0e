import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { checkPduSize, parsePdu } from '../../src/rooms/index.js';

const good = {
  auth_events: ['$a'],
  content: { body: 'x' },
  depth: 3,
  hashes: { sha256: 'abc' },
  origin_server_ts: 1,
  prev_events: ['$p'],
  room_id: '!r:example.org',
  sender: '@u:example.org',
  signatures: { 'example.org': { 'ed25519:1': 'sig' } },
  type: 'm.room.message',
};

function reason(raw: unknown, version: string): string {
  const r = parsePdu(raw, version);
  assert.equal(r.ok, false);
  return r.ok ? '' : r.reason;
}

describe('parsePdu', () => {
  it('accepts a well-formed event', () => {
    const r = parsePdu(good, '10');
    assert.equal(r.ok, true);
  });

  it('rejects missing or mistyped fields', () => {
    assert.match(reason({ ...good, type: 1 }, '10'), /type/);
    assert.match(reason({ ...good, sender: 'u' }, '10'), /sender/);
    assert.match(reason({ ...good, content: [] }, '10'), /content/);
    assert.match(reason({ ...good, depth: -1 }, '10'), /depth/);
    assert.match(reason({ ...good, hashes: {} }, '10'), /hashes/);
    assert.match(reason({ ...good, signatures: { s: 'x' } }, '10'), /signatures/);
    assert.match(reason({ ...good, prev_events: [['$p', {}]] }, '10'), /prev_events/);
    assert.match(reason({ ...good, state_key: 'x'.repeat(256) }, '10'), /state_key/);
    assert.match(reason('nope', '10'), /object/);
  });

  it('enforces canonical JSON from v6 only', () => {
    assert.match(reason({ ...good, content: { n: 1.5 } }, '6'), /content\.n: 1\.5 is not an integer/);
    assert.equal(parsePdu({ ...good, content: { n: 1.5 } }, '5').ok, true);
  });

  it('v12: hash room IDs, and no room_id on the create event', () => {
    const roomId = '!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ';
    assert.equal(parsePdu({ ...good, room_id: roomId }, '12').ok, true);
    assert.match(reason(good, '12'), /room_id/);
    const create = { ...good, type: 'm.room.create', state_key: '', prev_events: [], auth_events: [] };
    assert.match(reason(create, '12'), /must not have a room_id/);
    const { room_id: _omit, ...noRoom } = create;
    assert.equal(parsePdu(noRoom, '12').ok, true);
    assert.match(reason(noRoom, '11'), /room_id/);
  });

  it('v1/v2: requires event_id and normalises reference pairs', () => {
    const legacy = {
      ...good,
      event_id: '$e:example.org',
      prev_events: [['$p:example.org', { sha256: 'x' }]],
    };
    assert.match(reason(legacy, '1'), /auth_events/);
    const r = parsePdu({ ...legacy, auth_events: [] }, '1');
    assert.ok(r.ok);
    assert.deepEqual(r.pdu.prev_events, ['$p:example.org']);
    assert.match(reason({ ...good, prev_events: [], auth_events: [] }, '2'), /event_id/);
  });

  it('limits the event to 65536 bytes of canonical JSON', () => {
    assert.equal(checkPduSize(good), null);
    const big = { ...good, content: { body: 'x'.repeat(65536) } };
    assert.match(checkPduSize(big) ?? '', /more than the limit of 65536/);
    assert.match(reason(big, '10'), /65536/);
  });
});
