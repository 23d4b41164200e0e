/** Hearth's pure Matrix room protocol layer: no I/O. */

export * from './auth/index.js';
export * from './base64.js';
export * from './build.js';
export * from './canonical-json.js';
export * from './event.js';
export * from './hashing.js';
export * from './identifiers.js';
export * from './redaction.js';
export * from './room-versions.js';
export * from './signing.js';
export * from './state-res/index.js';
export * from './validate.js';
