/**
 * Checks a response body against the response schema of an operation in the spec's OpenAPI files
 * (../shared/matrix-spec/data/api/client-server/*.yaml). A small JSON-schema subset, enough for the spec's
 * response schemas: $ref across files, type, properties, required, items, allOf, oneOf/anyOf, enum, pattern,
 * additionalProperties. Returns the list of problems (empty when the body conforms).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

type Schema = { [key: string]: unknown };

/** The spec's client-server OpenAPI files: `../shared/matrix-spec` beside the checkout, or HEARTH_MATRIX_SPEC. */
export const SPEC_API_DIR = resolve(
  process.env.HEARTH_MATRIX_SPEC ??
    resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/matrix-spec'),
  'data/api/client-server',
);

export const specAvailable = (): boolean => existsSync(SPEC_API_DIR);

const files = new Map<string, Schema>();

function load(file: string): Schema {
  let doc = files.get(file);
  if (!doc) {
    doc = parse(readFileSync(file, 'utf8')) as Schema;
    files.set(file, doc);
  }
  return doc;
}

function pointer(doc: Schema, fragment: string): Schema {
  let node: unknown = doc;
  for (const part of fragment.split('/').filter((p) => p !== '')) {
    node = (node as Schema)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node as Schema;
}

/** The schema `s` stands for, with its file (for resolving the $refs inside it). */
function deref(s: Schema, file: string): { schema: Schema; file: string } {
  let schema = s;
  let at = file;
  while (typeof schema.$ref === 'string') {
    const [path, fragment] = schema.$ref.split('#') as [string, string | undefined];
    const target = path === '' ? at : join(dirname(at), path);
    schema = fragment ? pointer(load(target), fragment) : load(target);
    at = target;
  }
  return { schema, file: at };
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function check(value: unknown, raw: Schema, file: string, where: string, out: string[]): void {
  const { schema, file: at } = deref(raw, file);
  for (const sub of (schema.allOf as Schema[] | undefined) ?? []) check(value, sub, at, where, out);
  for (const key of ['oneOf', 'anyOf'] as const) {
    const options = schema[key] as Schema[] | undefined;
    if (!options) continue;
    const fits = options.some((o) => {
      const errs: string[] = [];
      check(value, o, at, where, errs);
      return errs.length === 0;
    });
    if (!fits) out.push(`${where}: matches none of ${key}`);
  }
  const types = schema.type === undefined ? [] : ([] as unknown[]).concat(schema.type);
  const actual = typeOf(value);
  if (types.length && !types.some((t) => t === actual || (t === 'number' && actual === 'integer'))) {
    out.push(`${where}: ${actual}, expected ${types.join('|')}`);
    return;
  }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) {
    out.push(`${where}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  }
  if (
    typeof schema.pattern === 'string' &&
    typeof value === 'string' &&
    !new RegExp(schema.pattern).test(value)
  ) {
    out.push(`${where}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
  }
  if (actual === 'object') {
    const obj = value as Schema;
    for (const k of (schema.required as string[] | undefined) ?? []) {
      if (!(k in obj)) out.push(`${where}: missing required ${k}`);
    }
    const props = (schema.properties as Record<string, Schema> | undefined) ?? {};
    for (const [k, v] of Object.entries(obj)) {
      const sub = props[k];
      if (sub) check(v, sub, at, `${where}.${k}`, out);
      else if (typeof schema.additionalProperties === 'object' && schema.additionalProperties !== null) {
        check(v, schema.additionalProperties as Schema, at, `${where}.${k}`, out);
      } else if (schema.additionalProperties === false) out.push(`${where}: unexpected property ${k}`);
    }
  }
  if (actual === 'array' && schema.items && typeof schema.items === 'object') {
    for (const [i, v] of (value as unknown[]).entries())
      check(v, schema.items as Schema, at, `${where}[${i}]`, out);
  }
}

/**
 * Problems of `body` against the `status` response of `method path` in `file` (e.g. 'old_sync.yaml',
 * '/events', 'get', 200). An empty list means the body conforms.
 */
export function responseProblems(
  file: string,
  path: string,
  method: string,
  status: number,
  body: unknown,
): string[] {
  const full = join(SPEC_API_DIR, file);
  const doc = load(full);
  const op = pointer(doc, '')['paths'] as Record<string, Record<string, Schema>>;
  const operation = op[path]?.[method];
  if (!operation) throw new Error(`${method} ${path} is not in ${file}`);
  const response = (operation.responses as Record<string, Schema>)[String(status)];
  const schema = ((response?.content as Schema | undefined)?.['application/json'] as Schema | undefined)
    ?.schema;
  if (!schema) throw new Error(`${method} ${path} has no JSON schema for ${status} in ${file}`);
  const out: string[] = [];
  check(body, schema as Schema, full, 'body', out);
  return out;
}
