/** Validation at the edge: the shared zod → Matrix error parsing (src/util/validate.ts), for the route modules. */
export { isJsonObject, parseBody, parseParams, parseQuery } from '../util/validate.js';
