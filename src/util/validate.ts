/**
 * Validation shared by the HTTP edge and the modules below it (sync filters): zod schemas turned into Matrix errors
 * that name the offending field. Knows no HTTP.
 */
import type { z } from 'zod';
import { MatrixError } from '../api/errors.js';

function fieldName(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function toMatrixError(
  issues: readonly z.core.$ZodIssue[],
  where: 'body' | 'query' | 'path',
  input: unknown,
): MatrixError {
  const issue = issues[0];
  if (!issue) return new MatrixError('M_BAD_JSON', 'Invalid request');
  if (issue.code === 'unrecognized_keys') {
    return new MatrixError(
      where === 'body' ? 'M_BAD_JSON' : 'M_INVALID_PARAM',
      `Unknown field: ${issue.keys.join(', ')}`,
    );
  }
  const name = fieldName(issue.path);
  if (issue.code === 'invalid_type' && valueAt(input, issue.path) === undefined && name) {
    return new MatrixError('M_MISSING_PARAM', `Missing parameter: ${name}`);
  }
  const errcode = where === 'body' ? 'M_BAD_JSON' : 'M_INVALID_PARAM';
  return new MatrixError(errcode, name ? `Invalid parameter ${name}: ${issue.message}` : issue.message);
}

/** Parses a JSON request body; a missing body counts as `{}`. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const value = body === undefined || body === null ? {} : body;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new MatrixError('M_NOT_JSON', 'Content not a JSON object');
  }
  const result = schema.safeParse(value);
  if (!result.success) throw toMatrixError(result.error.issues, 'body', value);
  return result.data;
}

export function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.output<S> {
  const result = schema.safeParse(query ?? {});
  if (!result.success) throw toMatrixError(result.error.issues, 'query', query);
  return result.data;
}

export function parseParams<S extends z.ZodType>(schema: S, params: unknown): z.output<S> {
  const result = schema.safeParse(params ?? {});
  if (!result.success) throw toMatrixError(result.error.issues, 'path', params);
  return result.data;
}

/** True when `value` is a plain JSON object (not an array, not null). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
