/** Key documents, pure: what is accepted from another server or a notary, and what validity a key gets. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkNotarySignature,
  KeyResponseError,
  MAX_KEY_VALIDITY_MS,
  ownKeyDocument,
  parseKeyResponse,
} from '../../src/federation/server-keys.js';
import type { JsonObject } from '../../src/rooms/event.js';
import { generateSigningSeed, publicKeyBase64FromSeed, signJson } from '../../src/rooms/signing.js';

const NOW = 1_700_000_000_000;
const seed = generateSigningSeed();
const key = publicKeyBase64FromSeed(seed);
const oldKey = publicKeyBase64FromSeed(generateSigningSeed());

function doc(validUntil = NOW + 3_600_000): JsonObject {
  return ownKeyDocument(
    {
      serverName: 'remote.example',
      keyId: 'ed25519:k1',
      seed,
      publicKeyBase64: key,
      oldKeys: { 'ed25519:k0': { key: oldKey, expired_ts: NOW - 1_000 } },
    },
    validUntil,
  );
}

describe('key responses', () => {
  it('accepts a self-signed document: current keys until valid_until_ts, old keys until expired_ts', () => {
    assert.deepEqual(parseKeyResponse(doc(), 'remote.example', NOW), {
      serverName: 'remote.example',
      validUntilTs: NOW + 3_600_000,
      keys: [
        { keyId: 'ed25519:k1', key, validUntilTs: NOW + 3_600_000, expiredTs: null },
        { keyId: 'ed25519:k0', key: oldKey, validUntilTs: NOW - 1_000, expiredTs: NOW - 1_000 },
      ],
    });
  });

  it('trusts a key for at most 7 days whatever valid_until_ts says', () => {
    const parsed = parseKeyResponse(doc(NOW + 365 * 86_400_000), 'remote.example', NOW);
    assert.equal(parsed.validUntilTs, NOW + MAX_KEY_VALIDITY_MS);
    assert.equal(parsed.keys[0]?.validUntilTs, NOW + MAX_KEY_VALIDITY_MS);
  });

  it('rejects another server name, a changed document, no own signature, and a bad key', () => {
    assert.throws(() => parseKeyResponse(doc(), 'other.example', NOW), KeyResponseError);
    const changed = { ...doc(), valid_until_ts: NOW + 7_200_000 };
    assert.throws(() => parseKeyResponse(changed, 'remote.example', NOW), /invalid/);
    const unsigned = { ...doc(), signatures: {} };
    assert.throws(() => parseKeyResponse(unsigned, 'remote.example', NOW), /not signed/);
    const foreign = signJson({ ...unsigned }, 'remote.example', 'ed25519:zz', generateSigningSeed());
    assert.throws(
      () => parseKeyResponse(foreign, 'remote.example', NOW),
      /not signed/,
      'signed by a key it does not list',
    );
    const badKey = signJson(
      { server_name: 'remote.example', valid_until_ts: NOW, verify_keys: { 'ed25519:k1': { key: 'short' } } },
      'remote.example',
      'ed25519:k1',
      seed,
    );
    assert.throws(() => parseKeyResponse(badKey, 'remote.example', NOW), /not an ed25519 key/);
    assert.throws(() => parseKeyResponse([], 'remote.example', NOW), /not an object/);
  });

  it("checks a notary's signature with its configured keys, and relies on TLS without them", () => {
    const notarySeed = generateSigningSeed();
    const notaryKey = publicKeyBase64FromSeed(notarySeed);
    const signed = signJson(doc(), 'notary.example', 'ed25519:n', notarySeed);
    checkNotarySignature(signed, 'notary.example', { 'ed25519:n': notaryKey });
    checkNotarySignature(doc(), 'notary.example', undefined);
    assert.throws(
      () => checkNotarySignature(doc(), 'notary.example', { 'ed25519:n': notaryKey }),
      /not signed/,
    );
    assert.throws(
      () =>
        checkNotarySignature(signed, 'notary.example', {
          'ed25519:n': publicKeyBase64FromSeed(generateSigningSeed()),
        }),
      /invalid/,
    );
  });
});
