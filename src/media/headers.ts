/** Response headers for served media (as Synapse's add_file_headers) and parsing of Range requests. */

/** Synapse's INLINE_CONTENT_TYPES: served inline; everything else is an attachment. */
const INLINE_CONTENT_TYPES = new Set([
  'text/css',
  'text/plain',
  'text/csv',
  'application/json',
  'application/ld+json',
  'image/jpeg',
  'image/gif',
  'image/png',
  'image/apng',
  'image/webp',
  'image/avif',
  'video/mp4',
  'video/webm',
  'video/ogg',
  'video/quicktime',
  'audio/mp4',
  'audio/webm',
  'audio/aac',
  'audio/mpeg',
  'audio/ogg',
  'audio/wave',
  'audio/wav',
  'audio/x-wav',
  'audio/x-pn-wav',
  'audio/flac',
  'audio/x-flac',
]);

/** Synapse's sandbox for served media: nothing in it can run scripts or reach other origins. */
export const MEDIA_CSP =
  "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

// RFC 2616 token characters: a file name made only of these needs no encoding.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function encodeRfc5987(value: string): string {
  return encodeURIComponent(value).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

export function mediaHeaders(mediaType: string, fileName: string | null): Record<string, string> {
  const base = (mediaType.split(';')[0] ?? '').trim().toLowerCase();
  let contentType = mediaType;
  if (base.startsWith('text/') && !/;\s*charset=/i.test(mediaType))
    contentType = `${mediaType}; charset=UTF-8`;
  let disposition = INLINE_CONTENT_TYPES.has(base) ? 'inline' : 'attachment';
  if (fileName) {
    disposition += TOKEN.test(fileName)
      ? `; filename=${fileName}`
      : `; filename*=utf-8''${encodeRfc5987(fileName)}`;
  }
  return {
    'content-type': contentType,
    'content-disposition': disposition,
    'content-security-policy': MEDIA_CSP,
    'x-content-security-policy': MEDIA_CSP,
    'cross-origin-resource-policy': 'cross-origin',
    'x-robots-tag': 'noindex, nofollow, noarchive, noimageindex',
    'cache-control': 'public,max-age=86400,s-maxage=86400',
    'accept-ranges': 'bytes',
  };
}

export type ByteRange = { start: number; end: number } | 'unsatisfiable' | undefined;

/**
 * Parses a single-range `Range: bytes=...` header against a file of `size` bytes (inclusive end). Multiple ranges
 * and malformed headers are ignored (the whole file is served), as RFC 9110 allows.
 */
export function parseRange(header: string | undefined, size: number): ByteRange {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || (b !== '' && Number(b) < start)) return 'unsatisfiable';
  return { start, end };
}
