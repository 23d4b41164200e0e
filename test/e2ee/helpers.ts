/** Key material for the E2EE HTTP tests: signed device keys and cross-signing keys made with node:crypto. */
import { generateSigningSeed, publicKeyBase64FromSeed, signJson } from '../../src/rooms/signing.js';
import type { Client, Json } from '../helpers/server.js';

export type User = Client & { userId: string; deviceId: string };

export interface Ed25519 {
  seed: Buffer;
  pub: string;
}

export function ed25519(): Ed25519 {
  const seed = generateSigningSeed();
  return { seed, pub: publicKeyBase64FromSeed(seed) };
}

/** Device keys of `user`'s device, signed by the device's ed25519 key (returned for later signing). */
export function deviceKeys(
  user: { userId: string; deviceId: string },
  key = ed25519(),
  over: Json = {},
): { keys: Json; key: Ed25519 } {
  const body = {
    user_id: user.userId,
    device_id: user.deviceId,
    algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
    keys: { [`ed25519:${user.deviceId}`]: key.pub, [`curve25519:${user.deviceId}`]: 'curve' + user.deviceId },
    ...over,
  };
  return { keys: signJson(body, user.userId, `ed25519:${user.deviceId}`, key.seed), key };
}

/** A cross-signing key object; signed by `signer` (a master key) when given. */
export function csKey(userId: string, usage: string, key: Ed25519, signer?: Ed25519): Json {
  const body = { user_id: userId, usage: [usage], keys: { [`ed25519:${key.pub}`]: key.pub } };
  return signer ? signJson(body, userId, `ed25519:${signer.pub}`, signer.seed) : body;
}

export function sign(obj: Json, userId: string, key: Ed25519, keyId = key.pub): Json {
  return signJson(obj, userId, `ed25519:${keyId}`, key.seed);
}

export async function ok(p: Promise<{ status: number; body: Json }>): Promise<Json> {
  const res = await p;
  if (res.status !== 200) throw new Error(`expected 200, got ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

export async function createRoom(user: Client, body: Json = {}): Promise<string> {
  return (await ok(user.post('/_matrix/client/v3/createRoom', body))).room_id as string;
}

export async function sync(user: Client, since?: string): Promise<Json> {
  const q = since ? `?since=${encodeURIComponent(since)}&timeout=0` : '';
  return ok(user.get(`/_matrix/client/v3/sync${q}`));
}

export const deviceLists = (body: Json): { changed: string[]; left: string[] } =>
  body.device_lists as { changed: string[]; left: string[] };
export const toDevice = (body: Json): Json[] => (body.to_device as { events: Json[] }).events;
