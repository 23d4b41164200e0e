/**
 * Thumbnails with sharp, as Synapse makes them: `crop` fills exactly width x height (cropping the overflow), `scale`
 * fits within width x height keeping the aspect ratio and never enlarges. GIFs give their first frame unless an
 * animated thumbnail is asked for. Images over max_image_pixels are refused before decoding (decompression bombs).
 */
import type { Metadata, Sharp, SharpOptions } from 'sharp';

/** sharp (libvips) is loaded on the first thumbnail, not at startup: a server that never thumbnails saves its memory. */
let sharpModule: Promise<(input: string, opts?: SharpOptions) => Sharp> | undefined;
const loadSharp = () => (sharpModule ??= import('sharp').then((m) => m.default));

export type ThumbnailMethod = 'crop' | 'scale';

/** Synapse's default `thumbnail_sizes`, made right after an image is uploaded. */
export const DEFAULT_THUMBNAIL_SIZES: readonly { width: number; height: number; method: ThumbnailMethod }[] =
  [
    { width: 32, height: 32, method: 'crop' },
    { width: 96, height: 96, method: 'crop' },
    { width: 320, height: 240, method: 'scale' },
    { width: 640, height: 480, method: 'scale' },
    { width: 800, height: 600, method: 'scale' },
  ];

/** Source types that can be thumbnailed. */
const THUMBNAILABLE = new Set(['image/jpeg', 'image/jpg', 'image/png', 'image/webp', 'image/gif']);
const ANIMATABLE = new Set(['image/gif', 'image/webp', 'image/png']);

export function canThumbnail(mediaType: string | null): boolean {
  return mediaType !== null && THUMBNAILABLE.has(baseType(mediaType));
}

export function baseType(mediaType: string): string {
  return (mediaType.split(';')[0] ?? '').trim().toLowerCase();
}

export class ImageTooLargeError extends Error {
  constructor() {
    super('Image too large to thumbnail');
    this.name = 'ImageTooLargeError';
  }
}

export class ThumbnailError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ThumbnailError';
  }
}

export interface ThumbnailRequest {
  width: number;
  height: number;
  method: ThumbnailMethod;
  animated: boolean;
}

export interface Thumbnail {
  data: Buffer;
  contentType: string;
  width: number;
  height: number;
}

export async function makeThumbnail(
  sourcePath: string,
  sourceType: string,
  req: ThumbnailRequest,
  maxPixels: number,
): Promise<Thumbnail> {
  const type = baseType(sourceType);
  const sharp = await loadSharp();
  let meta: Metadata;
  try {
    meta = await sharp(sourcePath, { limitInputPixels: false }).metadata();
  } catch {
    throw new ThumbnailError('Cannot decode the image');
  }
  const frameHeight = meta.pageHeight ?? meta.height;
  if (!meta.width || !frameHeight) throw new ThumbnailError('Cannot decode the image');
  if (meta.width * frameHeight > maxPixels) throw new ImageTooLargeError();
  const animated = req.animated && ANIMATABLE.has(type) && (meta.pages ?? 1) > 1;

  try {
    let img = sharp(sourcePath, {
      animated,
      limitInputPixels: maxPixels * (animated ? (meta.pages ?? 1) : 1),
    });
    if (!animated) img = img.rotate();
    img =
      req.method === 'crop'
        ? img.resize(req.width, req.height, { fit: 'cover', position: 'centre' })
        : img.resize(req.width, req.height, { fit: 'inside', withoutEnlargement: true });
    let contentType: string;
    if (animated) {
      img = img.webp({ quality: 80 });
      contentType = 'image/webp';
    } else if (type === 'image/jpeg' || type === 'image/jpg') {
      img = img.jpeg({ quality: 80 });
      contentType = 'image/jpeg';
    } else if (type === 'image/webp') {
      img = img.webp({ quality: 80 });
      contentType = 'image/webp';
    } else {
      img = img.png();
      contentType = 'image/png';
    }
    const { data, info } = await img.toBuffer({ resolveWithObject: true });
    return { data, contentType, width: info.width, height: info.pageHeight ?? info.height };
  } catch (err) {
    throw new ThumbnailError(`Cannot thumbnail the image: ${(err as Error).message}`);
  }
}
