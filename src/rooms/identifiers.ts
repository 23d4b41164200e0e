/** Identifier grammar from the appendix "Identifier Grammar". */

const MAX_ID_BYTES = 255;

function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

const PORT = /^[0-9]{1,5}$/;
const IPV4 = /^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$/;
const IPV6_BODY = /^[0-9A-Fa-f:.]{2,45}$/;
const DNS_NAME = /^[0-9A-Za-z.-]{1,255}$/;

/** `server_name = hostname [ ":" port ]` (IPv4 literal, `[IPv6]` literal or DNS name). */
export function isValidServerName(name: string): boolean {
  let host = name;
  let port: string | undefined;
  if (name.startsWith('[')) {
    const close = name.indexOf(']');
    if (close < 0) return false;
    host = name.slice(0, close + 1);
    const rest = name.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return false;
      port = rest.slice(1);
    }
    const body = host.slice(1, -1);
    if (!IPV6_BODY.test(body) || !body.includes(':')) return false;
  } else {
    const colon = name.indexOf(':');
    if (colon >= 0) {
      host = name.slice(0, colon);
      port = name.slice(colon + 1);
    }
    if (IPV4.test(host)) {
      if (host.split('.').some((part) => Number(part) > 255)) return false;
    } else if (!DNS_NAME.test(host)) {
      return false;
    }
  }
  if (port !== undefined && (!PORT.test(port) || Number(port) > 65535)) return false;
  return true;
}

/** Localpart grammar for new user IDs: `1*( a-z / 0-9 / "-" / "." / "=" / "_" / "/" / "+" )`. */
export function isValidLocalpart(localpart: string): boolean {
  return /^[a-z0-9._=\-/+]+$/.test(localpart);
}

/**
 * Historical user ID localparts: any non-surrogate code points except `:` and NUL (the empty string
 * included). Servers must accept these over federation.
 */
export function isValidHistoricalLocalpart(localpart: string): boolean {
  // With the `u` flag, the class only matches surrogates that are not part of a pair.
  return !localpart.includes(':') && !localpart.includes('\0') && !/[\uD800-\uDFFF]/u.test(localpart);
}

/** Split an `&localpart:domain` identifier at its first `:`; `null` if malformed. */
function splitSigilId(id: string, sigil: string): { localpart: string; serverName: string } | null {
  if (!id.startsWith(sigil)) return null;
  const colon = id.indexOf(':');
  if (colon < 0) return null;
  return { localpart: id.slice(1, colon), serverName: id.slice(colon + 1) };
}

export interface ParsedId {
  localpart: string;
  serverName: string;
}

export interface UserIdOptions {
  /** Accept historical localparts (any code point except `:` and NUL). Default: false (strict grammar). */
  historical?: boolean;
}

/** Parse a user ID `@localpart:server`; `null` if it is not valid. */
export function parseUserId(userId: string, opts: UserIdOptions = {}): ParsedId | null {
  if (byteLength(userId) > MAX_ID_BYTES) return null;
  const parts = splitSigilId(userId, '@');
  if (!parts || !isValidServerName(parts.serverName)) return null;
  const ok = opts.historical
    ? isValidHistoricalLocalpart(parts.localpart)
    : isValidLocalpart(parts.localpart);
  return ok ? parts : null;
}

export function isValidUserId(userId: string, opts: UserIdOptions = {}): boolean {
  return parseUserId(userId, opts) !== null;
}

/** The server name of a `&localpart:domain` identifier (user ID, alias, v1-v11 room ID, v1/v2 event ID). */
export function serverNameOf(id: string): string | undefined {
  const colon = id.indexOf(':');
  return colon < 0 ? undefined : id.slice(colon + 1);
}

/** `#alias:server` with any localpart except `:` and NUL, at most 255 bytes. */
export function parseRoomAlias(alias: string): ParsedId | null {
  if (byteLength(alias) > MAX_ID_BYTES) return null;
  const parts = splitSigilId(alias, '#');
  if (!parts || !isValidServerName(parts.serverName) || !isValidHistoricalLocalpart(parts.localpart))
    return null;
  return parts;
}

export function isValidRoomAlias(alias: string): boolean {
  return parseRoomAlias(alias) !== null;
}

const URL_SAFE_SHA256 = /^[A-Za-z0-9_-]{43}$/;
const STD_SHA256 = /^[A-Za-z0-9+/]{43}$/;

/**
 * Room IDs: `!opaque:server` for room versions 1-11, `!` + URL-safe unpadded base64 sha256 (the create
 * event's reference hash) for version 12. With no `format`, either form is accepted.
 */
export function isValidRoomId(roomId: string, format?: 'domain' | 'hash'): boolean {
  if (!roomId.startsWith('!') || byteLength(roomId) > MAX_ID_BYTES) return false;
  const rest = roomId.slice(1);
  const hashOk = URL_SAFE_SHA256.test(rest);
  if (format === 'hash') return hashOk;
  const parts = splitSigilId(roomId, '!');
  const domainOk =
    parts !== null && isValidHistoricalLocalpart(parts.localpart) && isValidServerName(parts.serverName);
  if (format === 'domain') return domainOk;
  return hashOk || domainOk;
}

/**
 * Event IDs: `$opaque:server` (room versions 1-2), `$` + standard unpadded base64 sha256 (v3),
 * `$` + URL-safe unpadded base64 sha256 (v4+). With no `format`, any of these is accepted.
 */
export function isValidEventId(eventId: string, format?: 'v1' | 'v3' | 'v4'): boolean {
  if (!eventId.startsWith('$') || byteLength(eventId) > MAX_ID_BYTES) return false;
  const rest = eventId.slice(1);
  const v1 = (): boolean => {
    const parts = splitSigilId(eventId, '$');
    return parts !== null && parts.localpart.length > 0 && isValidServerName(parts.serverName);
  };
  switch (format) {
    case 'v1':
      return v1();
    case 'v3':
      return STD_SHA256.test(rest);
    case 'v4':
      return URL_SAFE_SHA256.test(rest);
    default:
      return STD_SHA256.test(rest) || URL_SAFE_SHA256.test(rest) || v1();
  }
}

/** Room version grammar: 1-32 characters of `a-z`, `0-9`, `.`, `-`. */
export function isValidRoomVersionId(version: string): boolean {
  return /^[a-z0-9.-]{1,32}$/.test(version);
}
