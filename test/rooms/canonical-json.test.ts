import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  CanonicalJsonError,
  canonicalJson,
  checkCanonicalValue,
  compareCodePoints,
  describeCanonicalViolation,
} from '../../src/rooms/index.js';

describe('canonicalJson (appendix examples)', () => {
  const cases: [string, string][] = [
    ['{}', '{}'],
    ['{"one": 1, "two": "Two"}', '{"one":1,"two":"Two"}'],
    ['{"b": "2", "a": "1"}', '{"a":"1","b":"2"}'],
    ['{"b":"2","a":"1"}', '{"a":"1","b":"2"}'],
    [
      `{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe",
        "three_pids": [{"medium": "email", "address": "john.doe@example.org"},
        {"medium": "msisdn", "address": "123456789"}]}}}`,
      '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":' +
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},' +
        '"success":true}}',
    ],
    ['{"a": "日本語"}', '{"a":"日本語"}'],
    ['{"本": 2, "日": 1}', '{"日":1,"本":2}'],
    ['{"a": "\\u65E5"}', '{"a":"日"}'],
    ['{"a": null}', '{"a":null}'],
    ['{"a": -0, "b": 1e10}', '{"a":0,"b":10000000000}'],
  ];
  for (const [input, expected] of cases) {
    it(`encodes ${input.slice(0, 40).replace(/\s+/g, ' ')}`, () => {
      assert.equal(canonicalJson(JSON.parse(input)), expected);
    });
  }

  it('escapes control characters per the grammar and leaves other characters raw', () => {
    assert.equal(
      canonicalJson({ s: '\u0000\u0008\t\n\u000b\f\r\u001f"\\/\u007f\u2028é' }),
      '{"s":"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\\"\\\\/\u007f\u2028é"}',
    );
  });

  it('sorts keys by code point, not UTF-16 code unit', () => {
    // U+FF61 is a single code unit 0xFF61; U+1F600 is the pair 0xD83D 0xDE00 (sorts before in UTF-16).
    const obj = { '\u{1F600}': 1, '\uFF61': 2, a: 3 };
    assert.equal(canonicalJson(obj), '{"a":3,"\uFF61":2,"\u{1F600}":1}');
    assert.ok(compareCodePoints('\uFF61', '\u{1F600}') < 0);
    assert.ok(compareCodePoints('ab', 'a') > 0);
  });

  it('sorts nested objects and keeps array order', () => {
    assert.equal(canonicalJson({ z: [3, 1, { y: 1, x: 2 }], a: true }), '{"a":true,"z":[3,1,{"x":2,"y":1}]}');
  });

  it('omits undefined object members and rejects non-JSON values', () => {
    assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}');
    assert.throws(() => canonicalJson({ a: NaN }), CanonicalJsonError);
    assert.throws(() => canonicalJson({ a: [Infinity] }), /a\[0\]/);
    assert.throws(() => canonicalJson({ f: () => 1 }), CanonicalJsonError);
    assert.throws(() => canonicalJson([undefined]), CanonicalJsonError);
  });
});

describe('checkCanonicalValue', () => {
  it('accepts valid JSON within the integer range', () => {
    assert.equal(
      checkCanonicalValue({ a: [1, -2, 'x', null, true], b: { c: 2 ** 53 - 1, d: -(2 ** 53) + 1 } }),
      null,
    );
  });

  it('rejects floats with the path of the offending value', () => {
    assert.deepEqual(checkCanonicalValue({ content: { list: [1, { n: 1.5 }] } }), {
      path: 'content.list[1].n',
      reason: '1.5 is not an integer',
    });
  });

  it('rejects integers out of range, NaN and Infinity', () => {
    assert.match(checkCanonicalValue({ n: 2 ** 53 })?.reason ?? '', /outside the range/);
    assert.match(checkCanonicalValue({ n: -(2 ** 53) })?.reason ?? '', /outside the range/);
    assert.equal(checkCanonicalValue({ n: NaN })?.reason, 'NaN is not allowed');
    assert.equal(checkCanonicalValue([-Infinity])?.path, '[0]');
  });

  it('rejects unpaired surrogates in strings and keys', () => {
    assert.equal(checkCanonicalValue({ s: '\uD800x' })?.path, 's');
    assert.equal(checkCanonicalValue({ '\uDC00': 1 })?.reason, 'key contains an unpaired surrogate');
    assert.equal(checkCanonicalValue({ s: '\u{1F600}' }), null);
  });

  it('describes a violation with a root path prefix', () => {
    assert.equal(describeCanonicalViolation({ x: 0.1 }, 'content'), 'content.x: 0.1 is not an integer');
    assert.equal(describeCanonicalViolation({ x: 1 }), null);
  });
});
