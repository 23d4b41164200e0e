import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  checkContentHash,
  computeContentHash,
  contentHashBase64,
  decodeBase64,
  decodeBase64Url,
  encodeUnpaddedBase64,
  encodeUnpaddedBase64Url,
  publicKeyBase64FromSeed,
  redact,
  signEvent,
  signJson,
  verifyEventSignature,
  verifyJsonSignature,
  withContentHash,
} from '../../src/rooms/index.js';

// appendices.md "Cryptographic Test Vectors"
const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1') as Buffer;
const SERVER = 'domain';
const KEY_ID = 'ed25519:1';

describe('unpadded base64', () => {
  it('matches the appendix examples', () => {
    const cases: [string, string][] = [
      ['', ''],
      ['f', 'Zg'],
      ['fo', 'Zm8'],
      ['foo', 'Zm9v'],
      ['foob', 'Zm9vYg'],
      ['fooba', 'Zm9vYmE'],
      ['foobar', 'Zm9vYmFy'],
    ];
    for (const [raw, enc] of cases) {
      assert.equal(encodeUnpaddedBase64(Buffer.from(raw)), enc);
      assert.equal(decodeBase64(enc)?.toString(), raw);
    }
  });

  it('distinguishes standard and URL-safe alphabets and accepts padding when decoding', () => {
    const bytes = Buffer.from([0xfb, 0xff, 0xbf]);
    assert.equal(encodeUnpaddedBase64(bytes), '+/+/');
    assert.equal(encodeUnpaddedBase64Url(bytes), '-_-_');
    assert.deepEqual(decodeBase64Url('-_-_'), bytes);
    assert.equal(decodeBase64('-_-_'), null);
    assert.equal(decodeBase64('Zg==')?.toString(), 'f');
    assert.equal(decodeBase64('Z'), null);
  });
});

describe('signJson (appendix JSON signing vectors)', () => {
  it('signs an empty object', () => {
    assert.deepEqual(signJson({}, SERVER, KEY_ID, SEED), {
      signatures: {
        domain: {
          'ed25519:1':
            'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ',
        },
      },
    });
  });

  it('signs an object with data, ignoring unsigned and keeping other signatures', () => {
    const signed = signJson(
      { one: 1, two: 'Two', unsigned: { age: 3 }, signatures: { other: { 'ed25519:x': 'abc' } } },
      SERVER,
      '1',
      SEED,
    );
    assert.equal(
      signed.signatures['domain']?.['ed25519:1'],
      'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw',
    );
    assert.equal(signed.signatures['other']?.['ed25519:x'], 'abc');
    assert.deepEqual(signed.unsigned, { age: 3 });
  });

  it('verifies signatures and rejects tampering or a wrong key', () => {
    const pk = publicKeyBase64FromSeed(SEED);
    const signed = signJson({ one: 1 }, SERVER, KEY_ID, SEED);
    assert.equal(verifyJsonSignature(signed, SERVER, KEY_ID, pk), true);
    assert.equal(verifyJsonSignature({ ...signed, unsigned: { x: 1 } }, SERVER, KEY_ID, pk), true);
    assert.equal(verifyJsonSignature({ ...signed, one: 2 }, SERVER, KEY_ID, pk), false);
    assert.equal(verifyJsonSignature(signed, 'other', KEY_ID, pk), false);
    const otherKey = publicKeyBase64FromSeed(Buffer.alloc(32, 7));
    assert.equal(verifyJsonSignature(signed, SERVER, KEY_ID, otherKey), false);
  });
});

describe('event hashing and signing (appendix event signing vectors)', () => {
  it('hashes and signs the minimal event', () => {
    const event = {
      room_id: '!x:domain',
      sender: '@a:domain',
      origin: 'domain',
      origin_server_ts: 1000000,
      signatures: {},
      hashes: {},
      type: 'X',
      content: {},
      prev_events: [],
      auth_events: [],
      depth: 3,
      unsigned: { age_ts: 1000000 },
    };
    const hashed = withContentHash(event);
    assert.equal(hashed.hashes.sha256, '5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos');
    const signed = signEvent(hashed, '1', SERVER, KEY_ID, SEED);
    assert.deepEqual(signed.signatures, {
      domain: {
        'ed25519:1': 'KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg',
      },
    });
    assert.deepEqual(signed.unsigned, { age_ts: 1000000 });
    assert.equal(checkContentHash(signed), true);
    assert.equal(verifyEventSignature(signed, '1', SERVER, KEY_ID, publicKeyBase64FromSeed(SEED)), true);
  });

  it('hashes and signs the event with redactable content; the signature survives redaction', () => {
    const event = {
      content: { body: 'Here is the message content' },
      event_id: '$0:domain',
      origin: 'domain',
      origin_server_ts: 1000000,
      type: 'm.room.message',
      room_id: '!r:domain',
      sender: '@u:domain',
      signatures: {},
      unsigned: { age_ts: 1000000 },
    };
    const hashed = withContentHash(event);
    assert.equal(hashed.hashes.sha256, 'onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g');
    const signed = signEvent(hashed, '1', SERVER, KEY_ID, SEED);
    assert.equal(
      signed.signatures['domain']?.['ed25519:1'],
      'Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA',
    );
    const pk = publicKeyBase64FromSeed(SEED);
    const redacted = redact(signed, '1');
    assert.equal(verifyEventSignature(redacted, '1', SERVER, KEY_ID, pk), true);
    // The redacted copy no longer matches its content hash.
    assert.equal(checkContentHash(redacted), false);
    // Changing the body keeps the signature valid (not covered) but breaks the content hash.
    const tampered = { ...signed, content: { body: 'changed' } };
    assert.equal(verifyEventSignature(tampered, '1', SERVER, KEY_ID, pk), true);
    assert.equal(checkContentHash(tampered), false);
    // Changing a protected key breaks the signature.
    assert.equal(verifyEventSignature({ ...signed, sender: '@v:domain' }, '1', SERVER, KEY_ID, pk), false);
  });

  it('excludes unsigned, signatures and hashes from the content hash', () => {
    const a = { type: 'X', content: { a: 1 } };
    const b = { ...a, unsigned: { age: 1 }, signatures: { s: {} }, hashes: { sha256: 'x' } };
    assert.deepEqual(computeContentHash(a), computeContentHash(b));
    assert.notEqual(contentHashBase64(a), contentHashBase64({ ...a, content: { a: 2 } }));
    assert.equal(checkContentHash({ ...a, hashes: { sha256: 'not base64!' } }), false);
    assert.equal(checkContentHash(a), false);
  });
});
