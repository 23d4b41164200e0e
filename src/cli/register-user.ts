/** `hearth register-user`: create an account directly in the database (works while the server runs). */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { createAccount } from '../accounts/register.js';
import { MatrixError } from '../api/errors.js';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { DatabaseUnavailableError, openStorage } from '../storage/db.js';
import { SchemaTooNewError } from '../storage/migrate.js';
import { CliError } from './errors.js';

async function askPassword(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) {
    // Non-interactive: the first line of standard input is the password.
    const rl = createInterface({ input: process.stdin });
    for await (const line of rl) {
      rl.close();
      return line;
    }
    throw new CliError('no password given: use --password or type it on standard input');
  }
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (!muted) process.stdout.write(chunk);
      cb();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  const ask = (q: string): Promise<string> =>
    new Promise((res) => {
      muted = false;
      process.stdout.write(q);
      muted = true;
      rl.question('', (a) => {
        process.stdout.write('\n');
        res(a);
      });
    });
  try {
    const first = await ask(prompt);
    const again = await ask('Confirm password: ');
    if (first !== again) throw new CliError('passwords do not match');
    return first;
  } finally {
    rl.close();
  }
}

export async function registerUserCommand(
  name: string,
  opts: { config: string; password?: string; admin: boolean },
): Promise<void> {
  let config;
  try {
    config = loadConfigFile(opts.config);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
  let localpart = name;
  if (name.startsWith('@')) {
    const m = /^@([^:]+):(.+)$/.exec(name);
    if (!m || m[2] !== config.server_name) {
      throw new CliError(`user id ${name} does not belong to this server (${config.server_name})`);
    }
    localpart = m[1] as string;
  }
  // As HTTP and shared-secret registration (and Synapse's register_new_matrix_user) do.
  localpart = localpart.toLowerCase();
  const password = opts.password ?? (await askPassword('Password: '));
  if (password === '') throw new CliError('the password must not be empty');
  let storage;
  try {
    storage = await openStorage(config.database);
  } catch (err) {
    if (err instanceof DatabaseUnavailableError || err instanceof SchemaTooNewError)
      throw new CliError(err.message);
    throw err;
  }
  try {
    const userId = await createAccount(storage.db, {
      localpart,
      serverName: config.server_name,
      password,
      admin: opts.admin,
    });
    console.log(`Created ${opts.admin ? 'admin ' : ''}user ${userId}`);
  } catch (err) {
    if (err instanceof MatrixError) throw new CliError(`cannot create user: ${err.message}`);
    throw err;
  } finally {
    await storage.close();
  }
}
