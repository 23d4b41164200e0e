/** A homeserver whose log lines a test reads (the log tests). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { validateConfig } from '../../src/config/load.js';
import { startHomeserver, type Homeserver } from '../../src/homeserver.js';
import { createLogger } from '../../src/log.js';
import { freshDatabase } from './engines.js';

/** A homeserver on SQLite whose log lines are captured in `lines`. */
export async function withCapturedLogs(
  overrides: Record<string, unknown>,
  level: string,
  run: (hs: Homeserver, lines: string[]) => Promise<void>,
): Promise<void> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const db = await freshDatabase('sqlite');
  const dir = mkdtempSync(join(tmpdir(), 'hearth-logs-'));
  const config = validateConfig(
    {
      server_name: 'test.local',
      listeners: [{ port: 0, bind_addresses: ['127.0.0.1'] }],
      database: db.config,
      signing_key_path: join(dir, 'signing.key'),
      media_store_path: join(dir, 'media'),
      ...overrides,
    },
    dir,
  );
  const hs = await startHomeserver(config, { logger: createLogger(level, sink) });
  try {
    await run(hs, lines);
  } finally {
    await hs.close();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}
