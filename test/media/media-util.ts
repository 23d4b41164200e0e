/** Helpers for the media tests: streamed request bodies of any size, streamed response hashing, raw fetches. */
import { createHash } from 'node:crypto';

/** Byte `i` of the test pattern: not constant, not periodic on any small block size. */
function fill(buf: Uint8Array, offset: number): void {
  for (let j = 0; j < buf.length; j++) {
    const i = offset + j;
    buf[j] = (Math.imul(i, 2654435761) >>> 13) ^ (i >>> 16);
  }
}

/** The first `size` bytes of the pattern, in memory (for small bodies). */
export function patternBytes(size: number): Buffer {
  const b = Buffer.alloc(size);
  fill(b, 0);
  return b;
}

/**
 * A request body of `size` pattern bytes produced chunk by chunk (the test never holds the whole file), and the
 * sha256 of what it produced once it has been fully read.
 */
export function patternBody(
  size: number,
  opts: { chunk?: number; stallAfter?: number } = {},
): { body: ReadableStream<Uint8Array>; sha256: () => string } {
  const chunk = opts.chunk ?? 256 * 1024;
  const hash = createHash('sha256');
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (opts.stallAfter !== undefined && sent >= opts.stallAfter) {
        await new Promise((r) => setTimeout(r, 60_000).unref());
        return;
      }
      if (sent >= size) {
        controller.close();
        return;
      }
      const n = Math.min(chunk, size - sent);
      const buf = new Uint8Array(n);
      fill(buf, sent);
      hash.update(buf);
      sent += n;
      controller.enqueue(buf);
    },
  });
  return { body, sha256: () => hash.digest('hex') };
}

/** The sha256 and length of a response body, read as a stream. */
export async function hashResponse(res: Response): Promise<{ sha256: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      hash.update(chunk);
      length += chunk.length;
    }
  }
  return { sha256: hash.digest('hex'), length };
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface Uploader {
  baseUrl: string;
  token?: string;
}

/** POST /_matrix/media/v3/upload with any body; returns the status and JSON body. */
export async function upload(
  who: Uploader,
  body: string | Uint8Array | ReadableStream<Uint8Array>,
  opts: { type?: string; filename?: string; signal?: AbortSignal; path?: string; method?: string } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const q = opts.filename !== undefined ? `?filename=${encodeURIComponent(opts.filename)}` : '';
  const headers: Record<string, string> = {};
  if (who.token) headers.authorization = `Bearer ${who.token}`;
  if (opts.type) headers['content-type'] = opts.type;
  const res = await fetch(`${who.baseUrl}${opts.path ?? '/_matrix/media/v3/upload'}${q}`, {
    method: opts.method ?? 'POST',
    headers,
    body,
    duplex: 'half',
    signal: opts.signal,
  } as RequestInit);
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** GET with an optional bearer token and extra headers; the body is left unread. */
export function get(
  who: Uploader,
  path: string,
  opts: { auth?: boolean; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth !== false && who.token) headers.authorization = `Bearer ${who.token}`;
  return fetch(who.baseUrl + path, { headers });
}

/** `mxc://server/id` → `server/id`. */
export function mxcPath(mxc: unknown): string {
  if (typeof mxc !== 'string' || !mxc.startsWith('mxc://')) throw new Error(`not an mxc URI: ${String(mxc)}`);
  return mxc.slice('mxc://'.length);
}

/**
 * Uploads `size` pattern bytes with node:http, honouring backpressure (fetch with a ReadableStream body keeps every
 * chunk until the request ends, which would hide the server's own memory use). Returns the status, the JSON body and
 * the sha256 of what was sent.
 */
export async function uploadPattern(
  who: Uploader,
  size: number,
  type = 'application/octet-stream',
): Promise<{ status: number; json: Record<string, unknown>; sha256: string }> {
  const { request } = await import('node:http');
  const hash = createHash('sha256');
  return new Promise((resolve, reject) => {
    const req = request(`${who.baseUrl}/_matrix/media/v3/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${who.token ?? ''}`, 'content-type': type, 'content-length': size },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          json: JSON.parse(Buffer.concat(parts).toString() || '{}') as Record<string, unknown>,
          sha256: hash.digest('hex'),
        }),
      );
    });
    let sent = 0;
    const chunk = 64 * 1024;
    const write = (): void => {
      while (sent < size) {
        const buf = Buffer.alloc(Math.min(chunk, size - sent));
        fill(buf, sent);
        hash.update(buf);
        sent += buf.length;
        if (!req.write(buf)) {
          req.once('drain', write);
          return;
        }
      }
      req.end();
    };
    write();
  });
}
