/**
 * Downloading media from its origin server (server-server API "Content Repository"): first the authenticated
 * `GET /_matrix/federation/v1/media/download/{mediaId}` (multipart/mixed: JSON metadata, then the bytes or a
 * `Location`), and, when the origin does not know that endpoint (404 M_UNRECOGNIZED, 400, 405, 501 or a 404 without
 * a Matrix error), the deprecated `GET /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false`.
 *
 * Errors are Matrix errors as Synapse answers them: 404 M_NOT_FOUND when the origin says so, 403 M_FORBIDDEN for a
 * server outside federation_domain_whitelist, 502 M_TOO_LARGE past max_upload_size, 504 M_NOT_YET_UPLOADED passed
 * on, and 502 M_UNKNOWN for an unreachable origin or an answer that cannot be understood.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import { MatrixError, notFound } from '../api/errors.js';
import {
  FederationDeniedError,
  FederationError,
  ResponseTooLargeError,
  type FederationClient,
  type RawFederationResponse,
} from '../federation/client.js';
import { dispositionFileName, mixedBoundary, MultipartError, parseMultipart } from './multipart.js';

/** Room for the multipart framing and the JSON part around a file of the largest allowed size. */
const MULTIPART_SLACK_BYTES = 64 * 1024;
const MAX_FILE_NAME_LENGTH = 255;
const MEDIA_TYPE = /^[A-Za-z0-9!#$&^_.+-]{1,127}\/[A-Za-z0-9!#$&^_.+-]{1,127}(\s*;[^\r\n]*)?$/;

export interface RemoteFile {
  bytes: Buffer;
  mediaType: string;
  fileName: string | null;
}

export interface RemoteFetchDeps {
  client: FederationClient;
  log: Logger;
  /** max_upload_size: larger remote files are refused. */
  maxBytes: number;
}

const failed = (): MatrixError => new MatrixError('M_UNKNOWN', 'Failed to fetch remote media', {}, 502);
const tooLarge = (limit: number): MatrixError =>
  new MatrixError('M_TOO_LARGE', `Remote media is larger than ${limit} bytes`, {}, 502);

function header(headers: IncomingHttpHeaders | Record<string, string>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function errcodeOf(body: Buffer): string | undefined {
  try {
    const json = JSON.parse(body.toString('utf8')) as { errcode?: unknown } | null;
    return typeof json?.errcode === 'string' ? json.errcode : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the origin does not serve the federation media endpoint (so the legacy endpoint is tried). */
function unknownEndpoint(res: RawFederationResponse): boolean {
  const errcode = errcodeOf(res.body);
  if (res.status === 404) return errcode === undefined || errcode === 'M_UNRECOGNIZED';
  return res.status === 400 || res.status === 405 || res.status === 501;
}

/** The Matrix error for a non-200 answer of the origin. */
function errorFor(res: RawFederationResponse): MatrixError {
  const errcode = errcodeOf(res.body);
  if (res.status === 404) return notFound('Not found');
  if (errcode === 'M_NOT_YET_UPLOADED')
    return new MatrixError('M_NOT_YET_UPLOADED', 'Content has not yet been uploaded');
  if (errcode === 'M_TOO_LARGE') return new MatrixError('M_TOO_LARGE', 'Remote media is too large', {}, 502);
  return failed();
}

function mediaTypeOf(value: string | undefined): string {
  const v = value?.trim();
  return v && MEDIA_TYPE.test(v) ? v : 'application/octet-stream';
}

function fileNameOf(disposition: string | undefined): string | null {
  const name = dispositionFileName(disposition);
  return name &&
    name.length <= MAX_FILE_NAME_LENGTH &&
    ![...name].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)
    ? name
    : null;
}

export class RemoteMediaFetcher {
  constructor(private readonly deps: RemoteFetchDeps) {}

  /** Downloads `mxc://{origin}/{mediaId}`; throws a MatrixError on any failure. */
  async download(origin: string, mediaId: string, timeoutMs: number): Promise<RemoteFile> {
    try {
      return await this.#download(origin, mediaId, timeoutMs);
    } catch (err) {
      if (err instanceof MatrixError) throw err;
      if (err instanceof FederationDeniedError)
        throw new MatrixError('M_FORBIDDEN', `Federation denied with ${origin}`);
      if (err instanceof ResponseTooLargeError) throw tooLarge(this.deps.maxBytes);
      this.deps.log.warn({ err, origin, mediaId }, 'failed to fetch remote media');
      if (err instanceof FederationError || err instanceof MultipartError) throw failed();
      throw err;
    }
  }

  async #download(origin: string, mediaId: string, timeoutMs: number): Promise<RemoteFile> {
    const { client, maxBytes } = this.deps;
    const res = await client.getRaw(
      origin,
      `/_matrix/federation/v1/media/download/${encodeURIComponent(mediaId)}`,
      {
        query: { timeout_ms: timeoutMs },
        maxBytes: maxBytes + MULTIPART_SLACK_BYTES,
      },
    );
    if (res.status === 200) return this.#fromMultipart(res);
    if (!unknownEndpoint(res)) throw errorFor(res);
    const legacy = await client.getRaw(
      origin,
      `/_matrix/media/v3/download/${encodeURI(origin)}/${encodeURIComponent(mediaId)}`,
      { query: { allow_remote: 'false', timeout_ms: timeoutMs }, maxBytes },
    );
    if (legacy.status !== 200) throw errorFor(legacy);
    return {
      bytes: legacy.body,
      mediaType: mediaTypeOf(header(legacy.headers, 'content-type')),
      fileName: fileNameOf(header(legacy.headers, 'content-disposition')),
    };
  }

  async #fromMultipart(res: RawFederationResponse): Promise<RemoteFile> {
    const boundary = mixedBoundary(header(res.headers, 'content-type'));
    if (!boundary) throw new MultipartError('the answer is not multipart/mixed with a boundary');
    const parts = parseMultipart(res.body, boundary);
    const [meta, content] = parts;
    if (parts.length !== 2 || !meta || !content)
      throw new MultipartError(`expected 2 parts, got ${parts.length}`);
    if (!/^application\/json\b/i.test(meta.headers['content-type'] ?? ''))
      throw new MultipartError('the first part is not application/json');
    try {
      const json: unknown = JSON.parse(meta.body.toString('utf8'));
      if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('not an object');
    } catch {
      throw new MultipartError('the first part is not a JSON object');
    }
    const location = content.headers['location'];
    if (location !== undefined) {
      if (!URL.canParse(location)) throw new MultipartError('the Location of the media part is not a URL');
      // The URL is not cached (the spec: the origin may limit its validity); the bytes it names are.
      const target = await this.deps.client.getUrl(location, this.deps.maxBytes);
      if (target.status !== 200) throw errorFor(target);
      return {
        bytes: target.body,
        mediaType: mediaTypeOf(header(target.headers, 'content-type')),
        fileName: fileNameOf(header(target.headers, 'content-disposition')),
      };
    }
    if (content.body.length > this.deps.maxBytes) throw tooLarge(this.deps.maxBytes);
    return {
      bytes: content.body,
      mediaType: mediaTypeOf(content.headers['content-type']),
      fileName: fileNameOf(content.headers['content-disposition']),
    };
  }
}
