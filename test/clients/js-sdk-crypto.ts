/**
 * matrix-js-sdk clients with Rust crypto (the wasm build of matrix-sdk-crypto) for the end-to-end encryption tests:
 * a started client with an in-memory crypto store, waiting for an event to decrypt (failing on a UTD), and the
 * timer patch that keeps the sdk's long timers from holding the test process.
 */
import * as RustSdkCryptoJs from '@matrix-org/matrix-sdk-crypto-wasm';
import type * as sdk from 'matrix-js-sdk';
import { createJsClient, startJsClient, type HearthUser } from './js-sdk.js';

export const CRYPTO_WAIT_MS = 20_000;

/** A started client with Rust crypto (in-memory store); `fetchFn` sees its requests when given. */
export async function cryptoClient(user: HearthUser, fetchFn?: typeof fetch): Promise<sdk.MatrixClient> {
  const client = createJsClient(user);
  if (fetchFn) (client.http.opts as { fetchFn?: typeof fetch }).fetchFn = fetchFn;
  await client.initRustCrypto({ useIndexedDB: false });
  // initRustCrypto turns the crypto library's tracing on at debug level, to the console: errors are enough here.
  new RustSdkCryptoJs.Tracing(RustSdkCryptoJs.LoggerLevel.Error).turnOn();
  await startJsClient(client, { pollTimeout: 2_000, disablePresence: true });
  return client;
}

/** Polls `check` until it returns a value (decryption happens asynchronously, outside the sync events). */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  ms = CRYPTO_WAIT_MS,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The decrypted body of the event once the client has it; fails on a decryption failure (UTD). */
export function decryptedBody(
  client: sdk.MatrixClient,
  roomId: string,
  eventId: string,
  ms = CRYPTO_WAIT_MS,
): Promise<string> {
  return eventually(
    `${client.getDeviceId() ?? '?'} to decrypt ${eventId}`,
    () => {
      const ev = client.getRoom(roomId)?.findEventById(eventId);
      if (!ev || ev.isBeingDecrypted() || ev.shouldAttemptDecryption()) return undefined;
      if (ev.isDecryptionFailure())
        throw new Error(`UTD on ${client.getDeviceId() ?? '?'}: ${ev.decryptionFailureReason}`);
      if (ev.getWireType() !== 'm.room.encrypted') throw new Error('event was not encrypted');
      const body = (ev.getContent() as { body?: unknown }).body;
      return typeof body === 'string' ? body : undefined;
    },
    ms,
  );
}

/**
 * The sdk leaves long timers behind a stopped client (a 5-minute wait for each encrypted event's decryption, the
 * 6-hour capabilities refresh), which would keep the test process alive. While these tests run, timers of a minute
 * or more are unref'd: they still fire if the process is alive, but do not hold it. Returns the undo.
 */
export function unrefLongTimers(): () => void {
  const original = globalThis.setTimeout;
  const patched = ((fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const t = original(fn, ms, ...args);
    if ((ms ?? 0) >= 60_000) t.unref();
    return t;
  }) as typeof setTimeout;
  globalThis.setTimeout = Object.assign(patched, original);
  return () => {
    globalThis.setTimeout = original;
  };
}
