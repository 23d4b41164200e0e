/**
 * Reads the client-server OpenAPI definitions of the Matrix spec into a flat list of operations: method, full path,
 * path and query parameters, authentication and the top-level shape of a JSON body. Deliberately shallow: the fuzzer
 * only needs names, types and whether a field is required.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';

export type JsonType = 'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array' | 'unknown';

export interface QueryParam {
  name: string;
  type: JsonType;
  required: boolean;
}

export interface BodyField {
  name: string;
  type: JsonType;
}

export interface Operation {
  /** e.g. `PUT`. */
  method: string;
  /** Full path template, e.g. `/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`. */
  path: string;
  file: string;
  operationId: string;
  pathParams: string[];
  query: QueryParam[];
  /** `none`: no token needed; `optional`: a token may be sent; `required`. */
  auth: 'none' | 'optional' | 'required';
  /** `json` bodies are fuzzed; `raw` (media uploads) are not; `none` takes no body. */
  body: 'json' | 'raw' | 'none';
  fields: BodyField[];
  required: string[];
  /** The body example of the spec (ids in it point at example.com). */
  example: unknown;
}

type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

class RefResolver {
  private readonly files = new Map<string, unknown>();

  load(file: string): unknown {
    let doc = this.files.get(file);
    if (doc === undefined) {
      doc = parse(readFileSync(file, 'utf8')) as unknown;
      this.files.set(file, doc);
    }
    return doc;
  }

  /** Follows `$ref` (local `#/…` pointers and relative files) until a node without one; returns it with its file. */
  resolve(node: unknown, file: string): { node: unknown; file: string } {
    let current = node;
    let at = file;
    for (let hops = 0; hops < 20 && isNode(current) && typeof current.$ref === 'string'; hops++) {
      const [target = '', pointer = ''] = current.$ref.split('#');
      if (target) at = join(dirname(at), target);
      let doc = this.load(at);
      for (const part of pointer.split('/').filter(Boolean)) doc = isNode(doc) ? doc[part] : undefined;
      current = doc;
    }
    return { node: current, file: at };
  }
}

function jsonType(schema: unknown): JsonType {
  if (!isNode(schema)) return 'unknown';
  const t = Array.isArray(schema.type) ? schema.type.find((x) => x !== 'null') : schema.type;
  if (
    t === 'string' ||
    t === 'integer' ||
    t === 'number' ||
    t === 'boolean' ||
    t === 'object' ||
    t === 'array'
  ) {
    return t;
  }
  if (schema.properties || schema.additionalProperties || schema.patternProperties) return 'object';
  if (schema.items) return 'array';
  return 'unknown';
}

/** Merges the top-level properties and required lists of a schema, through allOf/oneOf/anyOf and $refs. */
function collectFields(
  refs: RefResolver,
  schema: unknown,
  file: string,
  out: { fields: Map<string, JsonType>; required: Set<string> },
  depth = 0,
): void {
  if (depth > 10) return;
  const { node, file: at } = refs.resolve(schema, file);
  if (!isNode(node)) return;
  if (isNode(node.properties)) {
    for (const [name, prop] of Object.entries(node.properties)) {
      const type = jsonType(refs.resolve(prop, at).node);
      if (!out.fields.has(name) || out.fields.get(name) === 'unknown') out.fields.set(name, type);
    }
  }
  if (Array.isArray(node.required) && depth === 0) {
    for (const r of node.required) if (typeof r === 'string') out.required.add(r);
  }
  for (const key of ['allOf', 'oneOf', 'anyOf'] as const) {
    const list = node[key];
    if (!Array.isArray(list)) continue;
    for (const sub of list) {
      collectFields(refs, sub, at, out, depth + 1);
      // Only allOf makes the required fields of its members required.
      if (key === 'allOf') {
        const { node: s } = refs.resolve(sub, at);
        if (isNode(s) && Array.isArray(s.required)) {
          for (const r of s.required) if (typeof r === 'string') out.required.add(r);
        }
      }
    }
  }
}

const METHODS = ['get', 'put', 'post', 'delete'] as const;

/** Every operation of every `*.yaml` in `dir` (the spec's `data/api/client-server`). */
export function loadOperations(dir: string): Operation[] {
  const refs = new RefResolver();
  const ops: Operation[] = [];
  const seen = new Set<string>();
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.yaml')) continue;
    const file = join(dir, name);
    const doc = refs.load(file);
    if (!isNode(doc) || !isNode(doc.paths)) continue;
    const servers = Array.isArray(doc.servers) ? doc.servers : [];
    const server: unknown = servers[0];
    const vars = isNode(server) && isNode(server.variables) ? server.variables : {};
    const basePathVar = vars.basePath;
    const basePath =
      isNode(basePathVar) && typeof basePathVar.default === 'string' ? basePathVar.default : '';
    for (const [template, item] of Object.entries(doc.paths)) {
      if (!isNode(item)) continue;
      for (const method of METHODS) {
        const op = item[method];
        if (!isNode(op)) continue;
        // The spec writes a trailing space to keep two operations on one path apart (YAML keys are unique).
        const path = basePath + template.trim();
        const key = `${method} ${path} ${typeof op.operationId === 'string' ? op.operationId : ''}`;
        if (seen.has(key)) continue;
        seen.add(key);

        const params = [
          ...(Array.isArray(item.parameters) ? item.parameters : []),
          ...(Array.isArray(op.parameters) ? op.parameters : []),
        ].map((p) => refs.resolve(p, file).node);
        const query: QueryParam[] = [];
        for (const p of params) {
          if (!isNode(p) || p.in !== 'query' || typeof p.name !== 'string') continue;
          query.push({
            name: p.name,
            type: jsonType(refs.resolve(p.schema, file).node),
            required: p.required === true,
          });
        }
        const pathParams = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] as string);

        const security = Array.isArray(op.security) ? op.security : [];
        const auth =
          security.length === 0
            ? 'none'
            : security.some((s) => isNode(s) && Object.keys(s).length === 0)
              ? 'optional'
              : 'required';

        let body: Operation['body'] = 'none';
        const out = { fields: new Map<string, JsonType>(), required: new Set<string>() };
        let example: unknown;
        const requestBody = refs.resolve(op.requestBody, file).node;
        if (isNode(requestBody) && isNode(requestBody.content)) {
          const json = requestBody.content['application/json'];
          if (isNode(json)) {
            body = 'json';
            const { node: schema, file: at } = refs.resolve(json.schema, file);
            collectFields(refs, schema, at, out);
            example = json.example ?? (isNode(schema) ? schema.example : undefined);
            if (example === undefined && isNode(json.examples)) {
              const first = Object.values(json.examples)[0];
              if (isNode(first)) example = first.value;
            }
          } else {
            body = 'raw';
          }
        }
        ops.push({
          method: method.toUpperCase(),
          path,
          file: name,
          operationId: typeof op.operationId === 'string' ? op.operationId : key,
          pathParams,
          query,
          auth,
          body,
          fields: [...out.fields].map(([n, type]) => ({ name: n, type })),
          required: [...out.required],
          example,
        });
      }
    }
  }
  return ops;
}
