/** The `hearth` command line. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import type { DoctorCliOptions } from './doctor.js';
import { CliError } from './errors.js';
import type { GenerateConfigOptions } from './generate-config.js';

// Each command's module is imported when the command runs, so `serve` does not carry doctor, backup and
// register-user code (and their dependencies) in its heap for its whole life (idle footprint).
const serveCommand = async (opts: { config?: string }) => (await import('./serve.js')).serveCommand(opts);
const generateConfigCommand = async (opts: GenerateConfigOptions) =>
  (await import('./generate-config.js')).generateConfigCommand(opts);
const registerUserCommand = async (
  name: string,
  opts: { config: string; password?: string; admin: boolean },
) => (await import('./register-user.js')).registerUserCommand(name, opts);
const doctorCommand = async (opts: DoctorCliOptions) => (await import('./doctor.js')).doctorCommand(opts);
const backupCommand = async (opts: { config: string; out: string }) =>
  (await import('./backup.js')).backupCommand(opts);
const restoreCommand = async (opts: { config: string; from: string }) =>
  (await import('./backup.js')).restoreCommand(opts);

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command('hearth')
    .description('Hearth, a Matrix homeserver')
    .version(packageVersion(), '-V, --version')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('serve')
    .description(
      'run the homeserver (without --config: ./hearth-data/homeserver.yaml, generated on first start)',
    )
    .option('-c, --config <file>', 'path to homeserver.yaml')
    .action(serveCommand);

  program
    .command('generate-config')
    .description('print a complete, commented homeserver.yaml')
    .requiredOption('--server-name <name>', 'the server name (domain part of user ids)')
    .requiredOption('--data-dir <dir>', 'directory for the database, signing key and media')
    .option('--port <n>', 'client API port', (v) => parsePort(v), 8008)
    .option('--database <url>', 'SQLite file path or postgres:// URL')
    .option('--bind-address <addr>', 'address to listen on', '127.0.0.1')
    .option('--enable-registration', 'open registration over HTTP', false)
    .option(
      '--federation-port <n>',
      'add a TLS federation listener on this port (a self-signed certificate is written to the data dir)',
      (v) => parsePort(v),
    )
    .option(
      '--tls-certificate-path <file>',
      'PEM certificate of the federation listener (instead of a self-signed one)',
    )
    .option('--tls-private-key-path <file>', 'PEM private key of the federation listener')
    .action(generateConfigCommand);

  program
    .command('register-user')
    .description('create an account directly in the database')
    .requiredOption('-c, --config <file>', 'path to homeserver.yaml')
    .argument('<name>', 'localpart or full user id')
    .option('-p, --password <password>', 'password (asked for when omitted)')
    .option('-a, --admin', 'make the user a server admin', false)
    .action(registerUserCommand);

  program
    .command('doctor')
    .description(
      'check the database of a stopped server; --repair fixes what it finds (exit 0 clean, 1 problems, 2 error)',
    )
    .requiredOption('-c, --config <file>', 'path to homeserver.yaml')
    .option('--json', 'print the report as JSON', false)
    .option('--repair', 'repair what is found (quarantine, rebuild), then check again', false)
    .option('--room <roomId>', 'check only this room (and the cross-room checks)')
    .option('--list-quarantine', 'list quarantined events and rows', false)
    .option(
      '--progress-every <n>',
      'a progress line on stderr every N rooms',
      (v) => Math.max(1, Number(v) || 100),
      100,
    )
    .action(doctorCommand);

  program
    .command('backup')
    .description('make a consistent backup (database, signing key, config, media) while the server runs')
    .requiredOption('-c, --config <file>', 'path to homeserver.yaml')
    .requiredOption('--out <path>', 'backup directory to create')
    .action(backupCommand);

  program
    .command('restore')
    .description('restore a backup into an empty database')
    .requiredOption('-c, --config <file>', 'path to homeserver.yaml')
    .requiredOption('--from <path>', 'backup directory')
    .action(restoreCommand);

  return program;
}

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new CliError(`--port must be a port number, got ${v}`);
  return n;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; usage errors were already printed by commander.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof Error) {
      console.error(`hearth: ${err.message}`);
      process.exitCode = err instanceof CliError ? err.exitCode : 2;
      return;
    }
    throw err;
  }
}
