/**
 * multipart/mixed (RFC 2046 section 5.1) as the federation media endpoints use it: exactly two parts, the first
 * `application/json` metadata, the second the media bytes (or a `Location` header). Also the Content-Disposition
 * file name (RFC 6266, RFC 5987 `filename*`).
 */
import { randomBytes } from 'node:crypto';

export class MultipartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MultipartError';
  }
}

export interface Part {
  /** Header names in lower case; a repeated header keeps its last value. */
  headers: Record<string, string>;
  body: Buffer;
}

const CRLF = Buffer.from('\r\n');
const MAX_HEADER_BYTES = 16 * 1024;

/** A boundary of 32 hex characters: it cannot occur by chance in the content (RFC 2046 allows up to 70). */
export function newBoundary(): string {
  return randomBytes(16).toString('hex');
}

/** The `boundary` parameter of a multipart Content-Type, or undefined when it is not multipart/mixed. */
export function mixedBoundary(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const [type, ...params] = contentType.split(';');
  if (type?.trim().toLowerCase() !== 'multipart/mixed') return undefined;
  for (const p of params) {
    const m = /^\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s";]{1,70}))\s*$/i.exec(p);
    if (m) return m[1] ?? m[2];
  }
  return undefined;
}

/** The bytes before and after the content of a two-part federation media response. */
export function mediaMultipartFrame(
  boundary: string,
  contentHeaders: Record<string, string>,
): { head: Buffer; tail: Buffer } {
  const headers = Object.entries(contentHeaders)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const head =
    `--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n` + `--${boundary}\r\n${headers}\r\n`;
  return { head: Buffer.from(head, 'utf8'), tail: Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8') };
}

function parseHeaders(block: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  const text = block.toString('latin1');
  for (const line of text.split(/\r?\n/)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0)
      throw new MultipartError(`malformed part header line: ${JSON.stringify(line.slice(0, 80))}`);
    out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}

/** Splits a multipart body into its parts. Throws MultipartError on anything malformed or unterminated. */
export function parseMultipart(body: Buffer, boundary: string): Part[] {
  const dash = Buffer.from(`--${boundary}`, 'latin1');
  const delimiter = Buffer.concat([CRLF, dash]);
  // The first delimiter may open the body (no preamble) or follow a preamble and a CRLF.
  let pos: number;
  if (body.subarray(0, dash.length).equals(dash)) pos = dash.length;
  else {
    const at = body.indexOf(delimiter);
    if (at < 0) throw new MultipartError('no boundary delimiter in the body');
    pos = at + delimiter.length;
  }
  const parts: Part[] = [];
  for (;;) {
    if (body.subarray(pos, pos + 2).toString('latin1') === '--') return parts; // close delimiter
    // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
    while (body[pos] === 0x20 || body[pos] === 0x09) pos++;
    if (!body.subarray(pos, pos + 2).equals(CRLF)) throw new MultipartError('delimiter not followed by CRLF');
    pos += 2;
    const next = body.indexOf(delimiter, pos);
    if (next < 0) throw new MultipartError('part is not terminated by a boundary delimiter');
    const part = body.subarray(pos, next);
    let headerEnd = part.indexOf('\r\n\r\n');
    let bodyStart = headerEnd + 4;
    if (part.subarray(0, 2).equals(CRLF)) {
      headerEnd = 0; // no headers at all
      bodyStart = 2;
    }
    if (headerEnd < 0) throw new MultipartError('part headers are not terminated');
    if (headerEnd > MAX_HEADER_BYTES) throw new MultipartError('part headers are too long');
    parts.push({ headers: parseHeaders(part.subarray(0, headerEnd)), body: part.subarray(bodyStart) });
    pos = next + delimiter.length;
  }
}

/**
 * The file name of a Content-Disposition header: `filename*` (RFC 5987, UTF-8 or ISO-8859-1) before `filename`
 * (token or quoted string). Undefined when there is none or it cannot be decoded.
 */
export function dispositionFileName(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const params = new Map<string, string>();
  const re = /;\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/g;
  for (let m = re.exec(header); m; m = re.exec(header)) {
    const name = (m[1] as string).toLowerCase();
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
    if (!params.has(name)) params.set(name, value);
  }
  const extended = params.get('filename*');
  if (extended) {
    const m = /^([A-Za-z0-9_-]+)'[^']*'(.*)$/.exec(extended);
    if (m) {
      const charset = (m[1] as string).toLowerCase();
      try {
        if (charset === 'utf-8') return decodeURIComponent(m[2] as string) || undefined;
        if (charset === 'iso-8859-1') {
          const bytes = (m[2] as string).replace(/%([0-9A-Fa-f]{2})/g, (_s, h: string) =>
            String.fromCharCode(parseInt(h, 16)),
          );
          return bytes || undefined;
        }
      } catch {
        // undecodable: fall back to filename
      }
    }
  }
  const plain = params.get('filename');
  return plain ? plain : undefined;
}
