/** Validation at the edge: the shared zod → Matrix error parsing (src/util/validate.ts), for the route modules. */
import { z } from 'zod';

export { isJsonObject, parseBody, parseParams, parseQuery } from '../util/validate.js';

/** A `limit` query parameter: a non-negative integer, `def` when absent, clamped to `max`. */
export const limitParam = (def: number, max: number) =>
  z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .transform((n) => Math.min(n ?? def, max));
