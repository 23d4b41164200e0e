/**
 * Request bodies as JSON: strict UTF-8, then one iterative pass that bounds nesting and refuses what no database
 * column or canonical JSON can hold, then JSON.parse. Nothing recursive sees a body before this.
 */
import type { FastifyRequest } from 'fastify';
import { MatrixError } from './errors.js';

/** The deepest nesting of arrays and objects a JSON body may have (canonical JSON bound of Synapse-class servers). */
export const MAX_JSON_DEPTH = 100;

const utf8 = new TextDecoder('utf-8', { fatal: true });

const isHex = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

function hex4(text: string, at: number): number {
  if (at + 4 > text.length) return -1;
  for (let k = at; k < at + 4; k++) if (!isHex(text.charCodeAt(k))) return -1;
  return parseInt(text.slice(at, at + 4), 16);
}

/**
 * One iterative pass over the JSON text, before JSON.parse: the nesting depth of arrays and objects outside
 * strings, and the `\u` escapes inside strings. U+0000 and unpaired surrogates are valid JSON but no database
 * column (PostgreSQL text/jsonb) nor canonical JSON accepts them, so they are refused here, once, for every
 * endpoint. Raw unpaired surrogates cannot occur: the text was decoded from strict UTF-8.
 */
export function checkJsonText(text: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x22) inString = false;
      else if (c === 0x5c) {
        if (text.charCodeAt(i + 1) !== 0x75) {
          i++;
          continue;
        }
        const unit = hex4(text, i + 2);
        if (unit < 0) continue; // malformed escape: JSON.parse rejects it
        i += 5;
        if (unit === 0) throw new MatrixError('M_BAD_JSON', 'JSON strings may not contain U+0000');
        if (unit >= 0xdc00 && unit <= 0xdfff) {
          throw new MatrixError('M_BAD_JSON', 'JSON strings may not contain unpaired surrogates');
        }
        if (unit >= 0xd800 && unit <= 0xdbff) {
          const low =
            text.charCodeAt(i + 1) === 0x5c && text.charCodeAt(i + 2) === 0x75 ? hex4(text, i + 3) : -1;
          if (low < 0xdc00 || low > 0xdfff) {
            throw new MatrixError('M_BAD_JSON', 'JSON strings may not contain unpaired surrogates');
          }
          i += 6;
        }
      }
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new MatrixError('M_BAD_JSON', `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

export function parseJsonBody(req: FastifyRequest, body: Buffer): unknown {
  if (req.routeOptions.config.rawBody) return body;
  if (body.length === 0) return undefined;
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new MatrixError('M_NOT_JSON', 'Content not JSON: invalid UTF-8');
  }
  checkJsonText(text);
  try {
    return JSON.parse(text);
  } catch {
    throw new MatrixError('M_NOT_JSON', 'Content not JSON');
  }
}
