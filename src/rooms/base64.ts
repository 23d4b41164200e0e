/** Unpadded Base64 helpers (appendix "Unpadded Base64" / "URL-safe unpadded Base64"). */

export function encodeUnpaddedBase64(data: Uint8Array): string {
  return Buffer.from(data).toString('base64').replace(/=+$/, '');
}

export function encodeUnpaddedBase64Url(data: Uint8Array): string {
  return Buffer.from(data).toString('base64url');
}

const STD = /^[A-Za-z0-9+/]*={0,2}$/;
const URL_SAFE = /^[A-Za-z0-9\-_]*={0,2}$/;

function validLength(s: string): boolean {
  return s.replace(/=+$/, '').length % 4 !== 1;
}

/**
 * Decode standard Base64, padded or not. Returns `null` on malformed input
 * (Node's decoder silently ignores bad characters, so we validate first).
 */
export function decodeBase64(s: string): Buffer | null {
  if (!STD.test(s) || !validLength(s)) return null;
  return Buffer.from(s, 'base64');
}

/** Decode URL-safe Base64, padded or not. Returns `null` on malformed input. */
export function decodeBase64Url(s: string): Buffer | null {
  if (!URL_SAFE.test(s) || !validLength(s)) return null;
  return Buffer.from(s, 'base64url');
}
