/**
 * Request authentication (server-server API "Request Authentication"): the method, target, origin, destination and
 * body are signed as one JSON object with the appendix's JSON signing, and the signature travels in an
 * `Authorization: X-Matrix origin=..,destination=..,key=..,sig=..` header. Pure: no I/O.
 */
import type { JsonObject } from '../rooms/event.js';
import { signJson, verifyJsonSignature } from '../rooms/signing.js';

export interface RequestToSign {
  method: string;
  /** Path and query string as sent, starting with `/_matrix/`. */
  uri: string;
  origin: string;
  destination: string;
  /** The JSON body; absent for requests without one. */
  content?: unknown;
}

export interface XMatrixParams {
  origin: string;
  /** Absent from the headers of servers older than spec v1.3. */
  destination: string | undefined;
  key: string;
  sig: string;
}

function requestJson(req: RequestToSign): JsonObject {
  const json: JsonObject = {
    method: req.method.toUpperCase(),
    uri: req.uri,
    origin: req.origin,
    destination: req.destination,
  };
  if (req.content !== undefined) json['content'] = req.content as JsonObject;
  return json;
}

/** The `Authorization` header value for a request, signed with the origin's key. */
export function signRequest(req: RequestToSign, keyId: string, seed: Uint8Array): string {
  const signed = signJson(requestJson(req), req.origin, keyId, seed);
  const sig = signed.signatures[req.origin]?.[keyId] ?? '';
  // As the spec asks of senders: one space after X-Matrix, lower-case names, no spaces around commas.
  return `X-Matrix origin="${req.origin}",destination="${req.destination}",key="${keyId}",sig="${sig}"`;
}

/**
 * Parses an `X-Matrix` header (RFC 9110 auth-params: case-insensitive names, optional quotes, backslash escapes,
 * and unquoted values with colons as older servers send). `null` when the scheme is not X-Matrix or origin, key or
 * sig is missing.
 */
export function parseXMatrix(header: string): XMatrixParams | null {
  const m = /^X-Matrix +(.*)$/is.exec(header.trim());
  if (!m) return null;
  const params = new Map<string, string>();
  const text = m[1] as string;
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /[\s,]/.test(text[i] as string)) i++;
    const eq = text.indexOf('=', i);
    if (eq < 0) break;
    const name = text.slice(i, eq).trim().toLowerCase();
    i = eq + 1;
    let value = '';
    if (text[i] === '"') {
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < text.length) i++;
        value += text[i];
        i++;
      }
      i++; // closing quote
    } else {
      const end = text.indexOf(',', i);
      value = (end < 0 ? text.slice(i) : text.slice(i, end)).trim();
      i = end < 0 ? text.length : end;
    }
    if (name && !params.has(name)) params.set(name, value);
  }
  const origin = params.get('origin');
  const key = params.get('key');
  const sig = params.get('sig');
  if (!origin || !key || !sig) return null;
  return { origin, destination: params.get('destination'), key, sig };
}

/** Checks the signature of a parsed header over the request, with the origin's public key for `params.key`. */
export function verifyRequest(
  req: RequestToSign,
  params: XMatrixParams,
  publicKey: Uint8Array | string,
): boolean {
  const json = { ...requestJson(req), signatures: { [req.origin]: { [params.key]: params.sig } } };
  return verifyJsonSignature(json, req.origin, params.key, publicKey);
}
