import assert from 'node:assert/strict';
import { createPublicKey, sign, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateSigningKey, parseSigningKeyFile, SigningKeyError } from '../src/keys/signing-key.js';
import { startTestServer } from './helpers/server.js';

const FORMAT = /^ed25519 (a_[A-Za-z0-9]{4}) ([A-Za-z0-9+/]{43})\n$/;

/** The raw 32-byte ed25519 public key as a KeyObject. */
function publicKeyFromRaw(raw: Buffer) {
  return createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]),
    format: 'der',
    type: 'spki',
  });
}

describe('signing key file', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hearth-keys-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is generated with mode 0600 in Synapse format, and reused', () => {
    const path = join(dir, 'nested', 'dir', 'example.org.signing.key');
    const key = loadOrCreateSigningKey(path);
    const st = statSync(path);
    assert.equal(st.mode & 0o777, 0o600);
    const text = readFileSync(path, 'utf8');
    const m = FORMAT.exec(text);
    assert.ok(m, `unexpected key file: ${JSON.stringify(text)}`);
    assert.equal(key.keyId, `ed25519:${m[1]}`);
    assert.equal(key.seed.length, 32);
    assert.equal(Buffer.from(m[2] as string, 'base64').toString('hex'), key.seed.toString('hex'));
    assert.match(key.publicKeyBase64, /^[A-Za-z0-9+/]{43}$/);

    const again = loadOrCreateSigningKey(path);
    assert.equal(again.keyId, key.keyId);
    assert.equal(again.publicKeyBase64, key.publicKeyBase64);
    assert.equal(readFileSync(path, 'utf8'), text, 'the file is not rewritten');

    // The private key signs what the advertised public key verifies.
    const data = Buffer.from('{"hello":"world"}');
    const sig = sign(null, data, key.privateKey);
    assert.ok(verify(null, data, publicKeyFromRaw(Buffer.from(key.publicKeyBase64, 'base64')), sig));
  });

  it('reads a Synapse key file (RFC 8032 test vector 1)', () => {
    const seed = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
    const pub = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
    const path = join(dir, 'synapse.signing.key');
    writeFileSync(path, `ed25519 a_AbCd ${seed.toString('base64').replace(/=+$/, '')}\n`, { mode: 0o600 });
    const key = loadOrCreateSigningKey(path);
    assert.equal(key.keyId, 'ed25519:a_AbCd');
    assert.equal(key.publicKeyBase64, pub.toString('base64').replace(/=+$/, ''));
    // Padded base64 and surrounding blank lines are accepted too.
    const padded = parseSigningKeyFile(`\ned25519 a_AbCd ${seed.toString('base64')}\n\n`, 'x');
    assert.equal(padded.publicKeyBase64, key.publicKeyBase64);
  });

  it('rejects malformed key files with a SigningKeyError naming the file', () => {
    for (const text of ['', 'garbage', 'ed448 a_x AAAA', 'ed25519 a_x', 'ed25519 a_x AAAA']) {
      assert.throws(
        () => parseSigningKeyFile(text, '/keys/bad.key'),
        (e: unknown) => e instanceof SigningKeyError && e.message.includes('/keys/bad.key'),
        JSON.stringify(text),
      );
    }
  });

  it('reports an unwritable location as a SigningKeyError', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    assert.throws(
      () => loadOrCreateSigningKey(join(file, 'signing.key')),
      (e: unknown) => e instanceof SigningKeyError && /cannot write signing key/.test(e.message),
    );
  });
});

describe('signing key of a running server', () => {
  it('is created on first start and the same key is used after a restart', async () => {
    const first = await startTestServer('sqlite');
    let second;
    try {
      const path = join(first.dataDir, 'signing.key');
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const m = FORMAT.exec(readFileSync(path, 'utf8'));
      assert.ok(m);
      assert.equal(first.hs.signingKey.keyId, `ed25519:${m[1]}`);
      const keyId = first.hs.signingKey.keyId;
      const pub = first.hs.signingKey.publicKeyBase64;
      await first.stop();
      second = await startTestServer('sqlite', {}, { db: first.db, dataDir: first.dataDir });
      assert.equal(second.hs.signingKey.keyId, keyId);
      assert.equal(second.hs.signingKey.publicKeyBase64, pub);
    } finally {
      if (second) await second.close();
      else await first.close();
    }
  });
});
