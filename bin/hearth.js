#!/usr/bin/env -S node --max-semi-space-size=1
// Entry point of the `hearth` command. Runs the compiled CLI (built by `npm install` via `prepare`).
// --max-semi-space-size=1 (MiB): V8 otherwise grows the young generation to 2x16 MiB during start-up and keeps it
// while the server idles; capped, an idle server is ~20 MiB smaller (`npm run bench -- idle-rss`). `npm start`
// passes the same flag; `node bin/hearth.js` without it runs with node's defaults.
import { main } from '../dist/cli/main.js';

main(process.argv).catch((err) => {
  console.error(`hearth: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(2);
});
