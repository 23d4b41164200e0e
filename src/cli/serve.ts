/** `hearth serve`: run until SIGTERM/SIGINT, then shut down cleanly. */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { generateConfig } from '../config/generate.js';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { startHomeserver, StartupError } from '../homeserver.js';
import { SigningKeyError } from '../keys/signing-key.js';
import { DatabaseUnavailableError } from '../storage/db.js';
import { SchemaTooNewError } from '../storage/migrate.js';
import { CliError } from './errors.js';

const DEFAULT_DATA_DIR = 'hearth-data';

/** Without --config, ./hearth-data/homeserver.yaml is used and written on first start. */
function defaultConfigPath(): string {
  const dataDir = resolve(DEFAULT_DATA_DIR);
  const path = join(dataDir, 'homeserver.yaml');
  if (!existsSync(path)) {
    try {
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(path, generateConfig({ serverName: 'localhost', dataDir, port: 8008 }), { mode: 0o600 });
    } catch (err) {
      throw new CliError(
        `data directory ${dataDir} is not writable: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    console.log(`Wrote a new configuration to ${path}`);
  }
  return path;
}

export async function serveCommand(opts: { config?: string }): Promise<void> {
  const configPath = opts.config ?? defaultConfigPath();
  let hs;
  try {
    const config = loadConfigFile(configPath);
    hs = await startHomeserver(config);
  } catch (err) {
    if (
      err instanceof ConfigError ||
      err instanceof StartupError ||
      err instanceof DatabaseUnavailableError ||
      err instanceof SchemaTooNewError ||
      err instanceof SigningKeyError
    ) {
      throw new CliError(err.message);
    }
    throw new CliError(`startup failed: ${(err as Error).message}`);
  }
  const server = hs;
  if (server.storage.freshlyCreated) {
    console.log(
      `\nHearth is running for ${server.config.server_name}. Registration over HTTP is ` +
        `${server.config.enable_registration ? 'open' : 'off'}.\n` +
        `Create the first account with:\n  npx hearth register-user --config ${resolve(configPath)} --admin NAME\n`,
    );
  }
  server.log.info({ urls: server.urls, server_name: server.config.server_name }, 'Hearth is listening');

  await new Promise<void>((done) => {
    const stop = (signal: string): void => {
      server.log.info({ signal }, 'shutting down');
      server
        .close()
        .catch((err: unknown) => server.log.error({ err }, 'error during shutdown'))
        .finally(() => {
          server.log.flush?.();
          done();
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  process.exitCode = 0;
}
