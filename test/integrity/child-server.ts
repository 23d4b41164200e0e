/** A homeserver in a child process, for the kill tests: `node --import tsx child-server.ts CONFIG`; prints its URL. */
import { loadConfigFile } from '../../src/config/load.js';
import { startHomeserver } from '../../src/homeserver.js';

const hs = await startHomeserver(loadConfigFile(process.argv[2] as string));
process.stdout.write(`${JSON.stringify({ url: hs.urls[0] })}\n`);
process.once('SIGTERM', () => void hs.close().then(() => process.exit(0)));
