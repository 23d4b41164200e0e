/**
 * Canonical JSON, as defined in the appendix "Signing JSON > Canonical JSON".
 *
 * - object keys sorted lexicographically by Unicode code point;
 * - no insignificant whitespace;
 * - strings emitted as UTF-8 (no `\uXXXX` escapes for non-ASCII), with only the escapes
 *   of the canonical grammar (`\b \t \n \f \r \" \\` and `\u00XX` for other control chars);
 * - numbers as integers without exponent or fraction; `-0` becomes `0`.
 */

export const MAX_SAFE_CANONICAL_INTEGER = Number.MAX_SAFE_INTEGER; // 2^53 - 1
export const MIN_SAFE_CANONICAL_INTEGER = -Number.MAX_SAFE_INTEGER; // -(2^53) + 1

export class CanonicalJsonError extends Error {
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(path ? `${path}: ${message}` : message);
    this.name = 'CanonicalJsonError';
  }
}

/** Compare two strings by Unicode code point (not by UTF-16 code unit as `<` does). */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done) return cb.done ? 0 : -1;
    if (cb.done) return 1;
    const pa = ca.value.codePointAt(0) ?? 0;
    const pb = cb.value.codePointAt(0) ?? 0;
    if (pa !== pb) return pa < pb ? -1 : 1;
  }
}

function sortedKeys(obj: Record<string, unknown>): string[] {
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined);
  // Array.prototype.sort compares UTF-16 code units, which differs from code point order for
  // astral characters versus U+E000..U+FFFF, so use an explicit code point comparison.
  return keys.sort(compareCodePoints);
}

function encode(value: unknown, path: string, out: string[]): void {
  if (value === null) {
    out.push('null');
    return;
  }
  switch (typeof value) {
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'string':
      out.push(JSON.stringify(value));
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError(`${value} cannot be encoded in JSON`, path);
      // Object.is(-0, 0) is false, but `-0 + 0` is `0`; JSON.stringify(-0) is already "0".
      // Non-integers are emitted as-is (legacy room versions may contain floats); use
      // checkCanonicalValue() to reject them in client-supplied content.
      out.push(JSON.stringify(value));
      return;
    case 'object': {
      if (Array.isArray(value)) {
        out.push('[');
        value.forEach((item: unknown, i) => {
          if (i > 0) out.push(',');
          if (item === undefined)
            throw new CanonicalJsonError('undefined is not a JSON value', `${path}[${i}]`);
          encode(item, `${path}[${i}]`, out);
        });
        out.push(']');
        return;
      }
      const obj = value as Record<string, unknown>;
      out.push('{');
      let first = true;
      for (const key of sortedKeys(obj)) {
        if (!first) out.push(',');
        first = false;
        out.push(JSON.stringify(key), ':');
        encode(obj[key], path ? `${path}.${key}` : key, out);
      }
      out.push('}');
      return;
    }
    default:
      throw new CanonicalJsonError(`a ${typeof value} is not a JSON value`, path);
  }
}

/** Encode a JSON value as canonical JSON (a JS string; encode it as UTF-8 to get the signed bytes). */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  encode(value, '', out);
  return out.join('');
}

/** Canonical JSON as UTF-8 bytes. */
export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

export interface CanonicalJsonViolation {
  /** Dotted path of the offending value, e.g. `content.body.foo[2]` (empty for the root). */
  path: string;
  /** Human-readable reason, e.g. `1.5 is not an integer`. */
  reason: string;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function joinPath(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/**
 * Check that a value can be represented in canonical JSON as the spec requires of client-supplied
 * content (room versions 6+): only integers in [-(2^53)+1, 2^53-1], no floats, NaN or Infinity,
 * strings that are valid Unicode. Returns `null` when the value is fine, otherwise the first violation.
 * The HTTP layer turns a violation into `400 M_BAD_JSON`.
 */
export function checkCanonicalValue(value: unknown, path = ''): CanonicalJsonViolation | null {
  if (value === null || typeof value === 'boolean') return null;
  if (typeof value === 'string') {
    return LONE_SURROGATE.test(value) ? { path, reason: 'string contains an unpaired surrogate' } : null;
  }
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return { path, reason: 'NaN is not allowed' };
    if (!Number.isFinite(value)) return { path, reason: 'Infinity is not allowed' };
    if (!Number.isInteger(value)) return { path, reason: `${value} is not an integer` };
    if (value > MAX_SAFE_CANONICAL_INTEGER || value < MIN_SAFE_CANONICAL_INTEGER) {
      return { path, reason: `${value} is outside the range [-(2^53)+1, (2^53)-1]` };
    }
    return null;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v = checkCanonicalValue(value[i], `${path}[${i}]`);
      if (v) return v;
    }
    return null;
  }
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    for (const key of Object.keys(obj)) {
      if (LONE_SURROGATE.test(key))
        return { path: joinPath(path, key), reason: 'key contains an unpaired surrogate' };
      const v = checkCanonicalValue(obj[key], joinPath(path, key));
      if (v) return v;
    }
    return null;
  }
  return { path, reason: `a ${typeof value} is not a JSON value` };
}

/** `checkCanonicalValue` as a message, e.g. `"content.n: 1.5 is not an integer"`, or `null`. */
export function describeCanonicalViolation(value: unknown, path = ''): string | null {
  const v = checkCanonicalValue(value, path);
  if (!v) return null;
  return v.path ? `${v.path}: ${v.reason}` : v.reason;
}
