/** Reading, validating and resolving homeserver.yaml. */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(top level)';
}

/** Turns zod issues into lines that name the key and what was expected. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const base = issue.path.length ? `${formatPath(issue.path)}.` : '';
        return issue.keys.map((k) => `${base}${k}: unknown key`).join('; ');
      }
      return `${formatPath(issue.path)}: ${issue.message}`;
    })
    .join('; ');
}

export function validateConfig(raw: unknown, baseDir: string): Config {
  const result = ConfigSchema.safeParse(raw ?? {});
  if (!result.success) throw new ConfigError(`invalid config: ${describeIssues(result.error.issues)}`);
  return resolvePaths(result.data, baseDir);
}

/** Relative paths in the config are relative to the config file's directory. */
function resolvePaths(config: Config, baseDir: string): Config {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  return {
    ...config,
    signing_key_path: abs(config.signing_key_path),
    media_store_path: abs(config.media_store_path),
    tls_certificate_path: config.tls_certificate_path && abs(config.tls_certificate_path),
    tls_private_key_path: config.tls_private_key_path && abs(config.tls_private_key_path),
    federation_custom_ca_list: config.federation_custom_ca_list?.map(abs),
    app_service_config_files: config.app_service_config_files.map(abs),
    database:
      config.database.engine === 'sqlite' && config.database.path
        ? {
            ...config.database,
            path: config.database.path === ':memory:' ? ':memory:' : abs(config.database.path),
          }
        : config.database,
  };
}

export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      `cannot read config file ${path}: ${code === 'ENOENT' ? 'no such file' : String(code)}`,
    );
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  return validateConfig(raw, dirname(resolve(path)));
}
