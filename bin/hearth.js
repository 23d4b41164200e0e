#!/usr/bin/env node
// Entry point of the `hearth` command. Runs the compiled CLI (built by `npm install` via `prepare`).
import { main } from '../dist/cli/main.js';

main(process.argv).catch((err) => {
  console.error(`hearth: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(2);
});
