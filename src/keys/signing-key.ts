/**
 * The server's ed25519 signing key, stored in Synapse's format: one line `ed25519 <key_id> <unpadded base64 seed>`.
 */
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface SigningKey {
  keyId: string;
  seed: Buffer;
  privateKey: KeyObject;
  /** Unpadded standard base64 of the raw public key. */
  publicKeyBase64: string;
}

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export class SigningKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SigningKeyError';
  }
}

export function signingKeyFromSeed(keyId: string, seed: Buffer): SigningKey {
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const publicKeyBase64 = spki
    .subarray(spki.length - 32)
    .toString('base64')
    .replace(/=+$/, '');
  return { keyId, seed, privateKey, publicKeyBase64 };
}

export function parseSigningKeyFile(text: string, path: string): SigningKey {
  const line = text.split('\n').find((l) => l.trim() !== '');
  const parts = line?.trim().split(/\s+/) ?? [];
  if (parts.length !== 3 || parts[0] !== 'ed25519')
    throw new SigningKeyError(
      `signing key file ${path} is not in the format "ed25519 <key_id> <base64 seed>"`,
    );
  const seed = Buffer.from(parts[2] as string, 'base64');
  if (seed.length !== 32)
    throw new SigningKeyError(`signing key file ${path} does not hold a 32-byte ed25519 seed`);
  return signingKeyFromSeed(`ed25519:${parts[1] as string}`, seed);
}

/** Loads the key at `path`, generating it (mode 0600) on first start. */
export function loadOrCreateSigningKey(path: string): SigningKey {
  if (existsSync(path)) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new SigningKeyError(
        `cannot read signing key ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    return parseSigningKeyFile(text, path);
  }
  const version = `a_${randomBytes(3)
    .toString('base64url')
    .replace(/[^A-Za-z0-9]/g, 'x')}`;
  const seed = randomBytes(32);
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `ed25519 ${version} ${seed.toString('base64').replace(/=+$/, '')}\n`, {
      mode: 0o600,
    });
    chmodSync(path, 0o600);
  } catch (err) {
    throw new SigningKeyError(
      `cannot write signing key ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  return signingKeyFromSeed(`ed25519:${version}`, seed);
}
