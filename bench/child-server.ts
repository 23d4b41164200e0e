/**
 * A Hearth in its own process for the benchmarks (so its RSS and CPU are its own): `node --import tsx
 * bench/child-server.ts <config.json> [localpart...]` starts the server from the JSON config, creates the named
 * accounts (password "bench password"), prints one JSON line `{"urls": [...]}` on stdout and runs until SIGTERM,
 * when it shuts down cleanly and exits.
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createAccount } from '../src/accounts/register.js';
import { validateConfig } from '../src/config/load.js';
import { startHomeserver } from '../src/homeserver.js';
import { createLogger } from '../src/log.js';

const [configPath, ...localparts] = process.argv.slice(2);
if (!configPath) {
  console.error('usage: child-server.ts <config.json> [localpart...]');
  process.exit(2);
}
const config = validateConfig(JSON.parse(readFileSync(configPath, 'utf8')) as unknown, dirname(configPath));
const hs = await startHomeserver(config, { logger: createLogger(config.log_level) });
for (const localpart of localparts)
  await createAccount(hs.storage.db, {
    localpart,
    serverName: config.server_name,
    password: 'bench password',
  });
process.stdout.write(`${JSON.stringify({ urls: hs.urls })}\n`);
process.once('SIGTERM', () => {
  void hs.close().finally(() => process.exit(0));
});
