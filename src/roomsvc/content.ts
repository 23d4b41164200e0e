/** Checks on client-supplied event content at the edge. */
import { MatrixError } from '../api/errors.js';
import { describeCanonicalViolation } from '../rooms/canonical-json.js';
import type { JsonObject } from '../rooms/event.js';

/** Content must be a JSON object representable as canonical JSON (no floats, integers within ±(2^53−1)). */
export function checkContent(value: unknown, what = 'content'): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MatrixError('M_NOT_JSON', `${what} must be a JSON object`);
  }
  const violation = describeCanonicalViolation(value, what);
  if (violation) throw new MatrixError('M_BAD_JSON', `Invalid JSON value: ${violation}`);
  return value as JsonObject;
}

/** Event types and state keys: non-empty where required, bounded in size (the PDU limit is 65 KB in total). */
export function checkEventType(type: string): void {
  if (type.length === 0 || Buffer.byteLength(type) > 255) {
    throw new MatrixError('M_INVALID_PARAM', 'Event type must be 1 to 255 bytes');
  }
}

/** State keys are bounded like event types (Synapse refuses keys over 255 bytes). */
export function checkStateKey(stateKey: string): void {
  if (Buffer.byteLength(stateKey) > 255) {
    throw new MatrixError('M_INVALID_PARAM', 'State key must be at most 255 bytes');
  }
}

export const MAX_PDU_BYTES = 65_536;
