import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DEFAULT_ROOM_VERSION,
  getRoomVersion,
  isValidEventId,
  isValidHistoricalLocalpart,
  isValidLocalpart,
  isValidRoomAlias,
  isValidRoomId,
  isValidRoomVersionId,
  isValidServerName,
  isValidUserId,
  parseRoomAlias,
  parseUserId,
  roomVersionsCapability,
  ROOM_VERSIONS,
  serverNameOf,
} from '../../src/rooms/index.js';

describe('room versions', () => {
  it('lists versions 1..12 as stable with 12 as default', () => {
    const cap = roomVersionsCapability();
    assert.equal(cap.default, '12');
    assert.equal(DEFAULT_ROOM_VERSION, '12');
    assert.deepEqual(Object.keys(cap.available), [
      '1',
      '2',
      '3',
      '4',
      '5',
      '6',
      '7',
      '8',
      '9',
      '10',
      '11',
      '12',
    ]);
    assert.ok(Object.values(cap.available).every((s) => s === 'stable'));
    assert.equal(roomVersionsCapability('10').default, '10');
    assert.throws(() => roomVersionsCapability('13'), /Unknown room version/);
  });

  it('has the per-version properties of the spec', () => {
    const ids = [...ROOM_VERSIONS.keys()];
    const where = (pred: (id: string) => boolean): string[] => ids.filter(pred);
    assert.deepEqual(
      where((id) => getRoomVersion(id).eventIdFormat === 'v1'),
      ['1', '2'],
    );
    assert.deepEqual(
      where((id) => getRoomVersion(id).eventIdFormat === 'v3'),
      ['3'],
    );
    assert.deepEqual(
      where((id) => getRoomVersion(id).stateResolution === 'v1'),
      ['1'],
    );
    assert.equal(getRoomVersion('12').stateResolution, 'v2.1');
    assert.equal(getRoomVersion('11').stateResolution, 'v2');
    assert.deepEqual(
      where((id) => getRoomVersion(id).knocking),
      ['7', '8', '9', '10', '11', '12'],
    );
    assert.deepEqual(
      where((id) => getRoomVersion(id).restrictedJoins),
      ['8', '9', '10', '11', '12'],
    );
    assert.deepEqual(
      where((id) => getRoomVersion(id).knockRestricted),
      ['10', '11', '12'],
    );
    assert.deepEqual(where((id) => getRoomVersion(id).stringPowerLevels).length, 9);
    assert.deepEqual(
      where((id) => getRoomVersion(id).aliasesAuthRule),
      ['1', '2', '3', '4', '5'],
    );
    assert.deepEqual(where((id) => getRoomVersion(id).creatorInContent).length, 10);
    assert.deepEqual(
      where((id) => getRoomVersion(id).privilegedCreators),
      ['12'],
    );
    assert.deepEqual(
      where((id) => !getRoomVersion(id).createEventInAuthEvents),
      ['12'],
    );
    assert.deepEqual(
      ids.map((id) => getRoomVersion(id).redaction),
      ['v1', 'v1', 'v1', 'v1', 'v1', 'v6', 'v6', 'v8', 'v9', 'v9', 'v11', 'v11'],
    );
  });

  it('validates room version grammar', () => {
    assert.equal(isValidRoomVersionId('1.2-beta'), true);
    assert.equal(isValidRoomVersionId('com.example.version'), true);
    assert.equal(isValidRoomVersionId(''), false);
    assert.equal(isValidRoomVersionId('A'), false);
    assert.equal(isValidRoomVersionId('x'.repeat(33)), false);
  });
});

describe('identifiers', () => {
  it('validates server names from the appendix', () => {
    for (const ok of [
      'matrix.org',
      'matrix.org:8888',
      '1.2.3.4',
      '1.2.3.4:1234',
      '[1234:5678::abcd]',
      '[1234:5678::abcd]:5678',
      'localhost',
    ]) {
      assert.equal(isValidServerName(ok), true, ok);
    }
    for (const bad of [
      '',
      'matrix.org:',
      'matrix.org:123456',
      'matrix.org:99999',
      'ex ample.org',
      '[1234',
      '1.2.3.256',
      'a_b.org',
      '[zz::1]',
    ]) {
      assert.equal(isValidServerName(bad), false, bad);
    }
  });

  it('validates user ID localparts (new and historical grammar)', () => {
    assert.equal(isValidLocalpart('alice.b_c=d-e/f+g1'), true);
    assert.equal(isValidLocalpart('Alice'), false);
    assert.equal(isValidLocalpart(''), false);
    assert.equal(isValidLocalpart('a b'), false);
    assert.equal(isValidHistoricalLocalpart('Alice Ü'), true);
    assert.equal(isValidHistoricalLocalpart(''), true);
    assert.equal(isValidHistoricalLocalpart('a:b'), false);
    assert.equal(isValidHistoricalLocalpart('a\u0000'), false);
  });

  it('parses user IDs', () => {
    assert.deepEqual(parseUserId('@alice:example.org:8448'), {
      localpart: 'alice',
      serverName: 'example.org:8448',
    });
    assert.equal(parseUserId('@Alice:example.org'), null);
    assert.deepEqual(parseUserId('@Alice:example.org', { historical: true }), {
      localpart: 'Alice',
      serverName: 'example.org',
    });
    assert.equal(parseUserId('alice:example.org'), null);
    assert.equal(parseUserId('@alice'), null);
    assert.equal(isValidUserId(`@${'a'.repeat(250)}:example.org`), false);
    assert.equal(serverNameOf('@a:b.org:80'), 'b.org:80');
    assert.equal(serverNameOf('$abc'), undefined);
  });

  it('validates room IDs, aliases and event IDs', () => {
    const hash = 'Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ';
    assert.equal(isValidRoomId(`!${hash}`, 'hash'), true);
    assert.equal(isValidRoomId('!abc:example.org', 'domain'), true);
    assert.equal(isValidRoomId('!abc:example.org', 'hash'), false);
    assert.equal(isValidRoomId(`!${hash}`, 'domain'), false);
    assert.equal(isValidRoomId('abc:example.org'), false);
    assert.equal(isValidRoomAlias('#room:example.org'), true);
    assert.deepEqual(parseRoomAlias('#Räum:example.org'), { localpart: 'Räum', serverName: 'example.org' });
    assert.equal(isValidRoomAlias('#room'), false);
    assert.equal(isValidEventId('$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk', 'v3'), true);
    assert.equal(isValidEventId('$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg', 'v4'), true);
    assert.equal(isValidEventId('$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg', 'v3'), false);
    assert.equal(isValidEventId('$abc:example.org', 'v1'), true);
    assert.equal(isValidEventId('$abc', 'v1'), false);
    assert.equal(isValidEventId('abc'), false);
  });
});
